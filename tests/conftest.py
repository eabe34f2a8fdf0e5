"""Fixtures: one private containerd and one in-process server per session; a fresh namespace per test."""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imageremoval.client import ImageRemovalClient
from imageremoval.server.config import ServerConfig, UsageSettings
from imageremoval.server.containerd.daemon import ContainerdBinary, DaemonError, PrivateContainerd

from .support.ctr import Ctr
from .support.images import Layer, busybox_layer
from .support.invariant import broken_images
from .support.server import REPO, Server, ServerThread
from .support.store import Store

_counter = itertools.count()

# Which containerd the suite runs against: "1.6" (Debian's, on PATH; the default) or "2" (the pinned build that
# `make containerd2` puts in .tools/). `make test` runs the suite once per version.
CONTAINERD_VARIABLE = "IMAGEREMOVAL_TEST_CONTAINERD"
CONTAINERD_CHOICES = ("1.6", "2")


def _containerd2_bin() -> Path:
    pinned = (REPO / "tools" / "containerd-v2.version").read_text().strip()
    return REPO / ".tools" / f"containerd-{pinned}" / "bin"


def pytest_configure(config: pytest.Config) -> None:
    """Put the chosen containerd (and its own ctr and shim) first on PATH for the whole run."""
    choice = os.environ.get(CONTAINERD_VARIABLE, "1.6")
    if choice not in CONTAINERD_CHOICES:
        raise pytest.UsageError(f"{CONTAINERD_VARIABLE}={choice!r}: expected one of {', '.join(CONTAINERD_CHOICES)}")
    if choice == "2":
        folder = _containerd2_bin()
        if not (folder / "containerd").is_file():
            raise pytest.UsageError(f"{CONTAINERD_VARIABLE}=2 needs {folder}/containerd: run `make containerd2`")
        os.environ["PATH"] = os.pathsep.join([str(folder), os.environ.get("PATH", "")])


def pytest_report_header(config: pytest.Config) -> str:
    """Every run says which containerd it used."""
    choice = os.environ.get(CONTAINERD_VARIABLE, "1.6")
    try:
        found = ContainerdBinary.find()
    except DaemonError as exc:
        return f"containerd ({CONTAINERD_VARIABLE}={choice}): {exc}"
    return f"containerd {found.version} at {found.path} ({CONTAINERD_VARIABLE}={choice})"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Said again at the end, where -q does not hide it."""
    terminalreporter.write_line(pytest_report_header(terminalreporter.config))


def _check_version(daemon: PrivateContainerd) -> None:
    choice = os.environ.get(CONTAINERD_VARIABLE, "1.6")
    assert daemon.version is not None
    if not daemon.version.version.startswith(f"{choice}."):
        pytest.fail(f"{CONTAINERD_VARIABLE}={choice} but the private containerd is {daemon.version.version}")


def _require_containerd() -> None:
    missing = [tool for tool in ("containerd", "runc", "ctr") if shutil.which(tool) is None]
    reason = ""
    if missing:
        reason = f"not installed: {', '.join(missing)} (run `make test`, which installs them)"
    elif os.geteuid() != 0:
        reason = "containerd needs root"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"containerd cannot run here: {reason}")
        pytest.skip(f"containerd cannot run here: {reason}")


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateContainerd]:
    """A private containerd for the whole session (own root, state and socket; CRI disabled)."""
    _require_containerd()
    daemon = PrivateContainerd(tmp_path_factory.mktemp("containerd"))
    daemon.start()
    _check_version(daemon)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def store(containerd: PrivateContainerd) -> Iterator[Store]:
    s = Store(containerd.address)
    yield s
    s.close()


@pytest.fixture(scope="session")
def ctr(containerd: PrivateContainerd) -> Ctr:
    return Ctr(containerd.address)


@pytest.fixture(scope="session")
def server(containerd: PrivateContainerd) -> Iterator[Server]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Without usage tracking: its label writes are metadata mutations that move when containerd's own collector
    # runs, which tests of asynchronous collection observe; the usage tests run tracking servers of their own.
    config = ServerConfig(listen="127.0.0.1:0", usage=UsageSettings(enabled=False))
    thread = ServerThread(config, containerd.address, provider)
    yield Server(thread, exporter)
    thread.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[ImageRemovalClient]:
    with ImageRemovalClient(server.target) as c:
        yield c


@pytest.fixture
def ns(request: pytest.FixtureRequest, store: Store, ctr: Ctr) -> Iterator[str]:
    """A fresh namespace; afterwards every remaining image must still have all its content."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    namespace = f"t{next(_counter)}-{name}"[:70].rstrip("-")
    yield namespace
    ctr.cleanup(namespace)
    problems = broken_images(store, namespace)
    for record_name in store.names(namespace):
        store.delete_record(namespace, record_name)
    assert not problems, f"content lost: {problems}"


@pytest.fixture(scope="session")
def busybox() -> Layer:
    """The static busybox layer, built once."""
    path = Path("/bin/busybox")
    if not path.exists():
        pytest.fail("busybox-static is not installed (make test installs it)")
    return busybox_layer(path)
