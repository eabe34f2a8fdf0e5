"""The private containerd: the config and shim of its own version, CRI off, and one daemon per root."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageremoval.server import cli
from imageremoval.server.containerd.daemon import DaemonError, PrivateContainerd

from .support.ctr import Ctr
from .support.images import Layer, manifest
from .support.store import Store
from .support.waiting import wait_until


def _plugins(ctr: Ctr) -> list[tuple[str, str, str]]:
    """(type, id, status) of every plugin the daemon knows."""
    lines = ctr("default", "plugins", "ls").stdout.splitlines()[1:]
    return [(cols[0], cols[1], cols[-1]) for cols in (line.split() for line in lines) if len(cols) >= 3]


def test_every_cri_plugin_of_the_running_version_is_off(containerd: PrivateContainerd, ctr: Ctr) -> None:
    plugins = _plugins(ctr)
    assert ("io.containerd.grpc.v1", "images", "ok") in plugins  # the listing is real
    cri = [p for p in plugins if p[0].startswith("io.containerd.cri.") or p[1] in {"cri", "podsandbox"}]
    assert cri == []
    log = (containerd.base_dir / "containerd.log").read_text()
    assert "starting cri plugin" not in log
    assert "cri" not in {p[1] for p in plugins}


def test_the_config_is_the_schema_its_version_wants(containerd: PrivateContainerd) -> None:
    """No migration warning on start (2.x logs one for every older schema; 1.6 reads version 2)."""
    assert containerd.version is not None
    config = (containerd.base_dir / "config.toml").read_text()
    assert config.startswith(f"version = {containerd.version.config_version}\n")
    assert (
        containerd.version.config_version == 2
        if containerd.version.major == 1
        else containerd.version.config_version >= 3
    )
    assert "migrated" not in (containerd.base_dir / "containerd.log").read_text().lower()


def test_a_container_runs_on_the_shim_of_the_daemons_own_version(
    containerd: PrivateContainerd, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    store.put(ns, ["docker.io/library/shim:latest"], manifest((busybox,), note="shim"))
    ctr.run_detached(ns, "docker.io/library/shim:latest", "shim-check")
    task_pid = next(
        int(line.split()[1]) for line in ctr(ns, "tasks", "ls").stdout.splitlines()[1:] if line.startswith("shim-check")
    )
    shim_pid = int(Path(f"/proc/{task_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert containerd.version is not None
    assert Path(f"/proc/{shim_pid}/exe").resolve() == containerd.version.path.parent / "containerd-shim-runc-v2"


@pytest.fixture
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateContainerd]:
    daemon = PrivateContainerd(tmp_path_factory.mktemp("busy"))
    daemon.start()
    yield daemon
    daemon.stop()


def _answers(address: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def test_a_second_daemon_on_the_same_root_is_refused_and_the_socket_kept(running: PrivateContainerd) -> None:
    second = PrivateContainerd(running.base_dir)
    with pytest.raises(DaemonError, match="already running") as caught:
        second.start()
    assert f"pid {running.pid}" in str(caught.value)
    assert not second.running
    assert _answers(running.address), "the first daemon's socket still answers"


def test_a_second_server_in_the_same_run_dir_exits_with_one_line(
    running: PrivateContainerd, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = running.base_dir.parent / "run"
    run_dir.mkdir()
    (run_dir / "containerd").symlink_to(running.base_dir)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = cli.main(["--run-dir", str(run_dir), "--listen", "127.0.0.1:0", "--log-format", "text"])
    finally:
        root.handlers[:], root.level = handlers, level
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "already running" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert _answers(running.address)


def test_an_orphaned_containerd_is_found_by_its_lock_and_left_running(tmp_path: Path) -> None:
    """The parent that started it died without stopping it (a killed `make run`): its lock is gone, the daemon
    is not."""
    base = tmp_path / "orphan"
    starter = (
        "import os, sys; from pathlib import Path; "
        "from imageremoval.server.containerd.daemon import PrivateContainerd; "
        "PrivateContainerd(Path(sys.argv[1])).start(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", starter, str(base)], check=True, timeout=60)
    orphan = int((base / "containerd.pid").read_text())
    try:
        fresh = PrivateContainerd(base)
        with pytest.raises(DaemonError, match=f"already running on {base / 'root'} \\(pid {orphan}\\)"):
            fresh.start()
        assert _answers(fresh.address)
        os.kill(orphan, 0)  # still alive
    finally:
        os.kill(orphan, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{orphan}").exists(), timeout=10)


def test_a_stale_socket_is_replaced_and_a_restart_works(tmp_path: Path) -> None:
    daemon = PrivateContainerd(tmp_path / "stale")
    daemon.base_dir.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(daemon.address)  # a socket file nothing listens on, as a crash leaves it
    with daemon:
        assert _answers(daemon.address)
    assert not Path(daemon.address).exists() or not _answers(daemon.address)
    with daemon:  # the same object starts again after a stop
        assert _answers(daemon.address)


def test_a_file_at_the_socket_path_that_is_no_socket_is_never_removed(tmp_path: Path) -> None:
    daemon = PrivateContainerd(tmp_path / "file")
    daemon.base_dir.mkdir(parents=True)
    Path(daemon.address).write_text("precious")
    with pytest.raises(DaemonError, match="not a socket"):
        daemon.start()
    assert Path(daemon.address).read_text() == "precious"
