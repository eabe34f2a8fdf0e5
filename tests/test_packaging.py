"""What a package user gets: the LICENSE, the .proto files in sdist and wheel, ranges, a client without telemetry."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROTOS = ("imageremoval/v1/image_removal.proto", "imageremoval/v1/error_reason.proto")
# The server's stack, which a client-only install does not have.
SERVER_ONLY = (
    "opentelemetry",
    "prometheus_client",
    "pythonjsonlogger",
    "docker_image",
    "grpc_health",
    "grpc_reflection",
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built offline by setuptools' own PEP 517 hooks from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("dists")
    source, out = tmp / "source", tmp / "out"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "node_modules", "target")
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "constraints.txt"):
        shutil.copy(REPO / name, source / name)
    for name in ("server", "client", "api"):
        shutil.copytree(REPO / name, source / name, ignore=skip)
    out.mkdir()
    hooks = (
        "from setuptools import build_meta as b; import sys; o = sys.argv[1]; print(b.build_sdist(o), b.build_wheel(o))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hooks, str(out)], cwd=source, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sdist_name, wheel_name = done.stdout.split()[-2:]
    return out / sdist_name, out / wheel_name


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_ships_the_proto_files_and_the_license(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[1]) as archive:
        names = set(archive.namelist())
        for proto in PROTOS:
            shipped = f"imageremoval/gen/proto/{proto}"
            assert shipped in names
            assert archive.read(shipped) == (REPO / "api" / proto).read_bytes()
        [license_file] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_file) == (REPO / "LICENSE").read_bytes()
    metadata = _wheel_metadata(dists[1])
    assert metadata["License-Expression"] == "Apache-2.0"
    assert (REPO / "LICENSE").read_text(encoding="utf-8").split()[:4] == ["Apache", "License", "Version", "2.0,"]


def test_the_sdist_ships_the_proto_files_as_written_and_the_license(dists: tuple[Path, Path]) -> None:
    with tarfile.open(dists[0]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for proto in PROTOS:
        assert f"api/{proto}" in names
        assert f"api/python/imageremoval/gen/proto/{proto}" in names
    assert {"LICENSE", "constraints.txt", "pyproject.toml"} <= names


def test_runtime_dependencies_are_ranges_and_the_client_needs_no_telemetry(dists: tuple[Path, Path]) -> None:
    requires = [r for r in _wheel_metadata(dists[1]).get_all("Requires-Dist") or [] if 'extra == "dev"' not in r]
    assert requires and not [r for r in requires if "==" in r.split(";")[0]], requires
    base = sorted(r.split(">")[0].split("<")[0].strip() for r in requires if "extra ==" not in r)
    assert base == ["googleapis-common-protos", "grpcio", "grpcio-status", "protobuf"]
    server = [r for r in requires if 'extra == "server"' in r]
    assert any(r.startswith("opentelemetry-sdk") for r in server)


def test_the_client_works_without_the_servers_stack() -> None:
    """In a fresh interpreter where the server's libraries cannot be imported, the client and its CLI import,
    and a call to a port nobody serves fails as a typed UnavailableError."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, socket, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {SERVER_ONLY!r}:
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, Block())
        from imageremoval.client import ErrorReason, ImageRemovalClient, UnavailableError
        from imageremoval.client.cli import build_parser

        build_parser()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with ImageRemovalClient(f"127.0.0.1:{{port}}", timeout=5) as client:
                client.remove("busybox")
        except UnavailableError as error:
            print("unavailable", error.error_reason == ErrorReason.ERROR_REASON_UNSPECIFIED)
        print(sorted(m for m in sys.modules if m.split(".")[0] in {SERVER_ONLY!r}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["unavailable True", "[]"]


def test_the_server_script_without_its_extra_says_how_to_install_it() -> None:
    """A client-only install still has `imageremoval-server`: --version answers, and serving stops with the
    pip command to run instead of a traceback."""
    script = textwrap.dedent(
        f"""
        import contextlib, importlib.abc, io, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {SERVER_ONLY!r}:
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, Block())
        from imageremoval.server.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(["--version"])
        print(out.getvalue().strip())
        print(main(["--listen", "127.0.0.1:0"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["imageremoval-server 0.1.0", "2"]
    assert "pip install 'imageremoval[server]'" in done.stderr
    assert "Traceback" not in done.stderr
