"""`python -m demo sample|hints|load [server flags]`: what `make run` and `make demo` use on a first run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imageremoval.server.config import ConfigError, ServerConfig, is_unix, load_config, parse_listen
from imageremoval.server.containerd.daemon import PrivateContainerd

from .archive import sample, write_archive

SAMPLE = Path(".run/demo/sample.tar")
DEMO = Path(".run/demo/demo.tar")
DEFAULT_TARGET = "127.0.0.1:50051"


def _shown(path: str) -> str:
    """A path relative to here when it is below here, so the printed commands stay short."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _target(config: ServerConfig) -> str | None:
    if is_unix(config.listen):
        return config.listen
    host, port = parse_listen(config.listen)
    if port == 0:
        return None
    return f"{'127.0.0.1' if host in {'0.0.0.0', '[::]', ''} else host}:{port}"


def _containerd(config: ServerConfig) -> str:
    return config.containerd_address or PrivateContainerd(config.run_dir / "containerd").address


def _serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _prefix(config: ServerConfig, target: str) -> tuple[str, str]:
    """The ctr and imageremoval command prefixes for this server."""
    ctr = f"ctr -a {_shown(_containerd(config))}" + ("" if config.namespace == "default" else f" -n {config.namespace}")
    cli = ".venv/bin/imageremoval" + ("" if target == DEFAULT_TARGET else f" --server {target}")
    if config.namespace != "default":
        cli += f" -n {config.namespace}"
    return ctr, cli


def write_sample(path: Path = SAMPLE) -> Path:
    return write_archive(path, {"docker.io/library/sample:latest": sample("sample")})


def hints(config: ServerConfig, timeout: float = 120) -> int:
    """Once the server answers SERVING, print the three commands to try (nothing if it never does)."""
    target = _target(config)
    if target is None or config.tls is not None:
        return 0
    deadline = time.monotonic() + timeout
    while not _serving(target):
        if time.monotonic() > deadline:
            return 0
        time.sleep(0.3)
    ctr, cli = _prefix(config, target)
    print(
        f"\nimageremoval is serving on {target}. Try, from another terminal:\n"
        f"  {ctr} images import {SAMPLE}   # a sample image (Debian's static busybox)\n"
        f"  {ctr} images ls -q                         # docker.io/library/sample:latest\n"
        f"  {cli} rm sample                            # Untagged: sample:latest, Deleted: sha256:...\n"
        "Every kind of answer in a minute: make demo\n",
        flush=True,
    )
    return 0


def _ctr(config: ServerConfig, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ctr", "-a", _containerd(config), "-n", config.namespace, *args]
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)


def load(config: ServerConfig, archive: Path = DEMO) -> int:
    """Sample images for every kind of answer, one with a running container and one with a stopped one."""
    target = _target(config) or DEFAULT_TARGET
    if not Path(_containerd(config)).exists():
        print(f"no containerd at {_containerd(config)}: start `make run` first", file=sys.stderr)
        return 1
    tagged = sample("demo-tags")
    images = {
        "docker.io/library/demo:latest": sample("demo"),
        "docker.io/library/demo-tags:1": tagged,
        "docker.io/library/demo-tags:2": tagged,
        "docker.io/library/demo-running:latest": sample("demo-running"),
        "docker.io/library/demo-stopped:latest": sample("demo-stopped"),
        "docker.io/library/demo-pinned:latest": sample("demo-pinned"),
    }
    for container in ("demo-running", "demo-stopped"):  # a second `make demo` starts afresh
        _ctr(config, "tasks", "kill", "-s", "SIGKILL", container, check=False)
        _ctr(config, "tasks", "delete", "-f", container, check=False)
        _ctr(config, "containers", "delete", container, check=False)
    _ctr(config, "images", "import", str(write_archive(archive, images)))
    _ctr(config, "run", "-d", "docker.io/library/demo-running:latest", "demo-running", "/bin/sleep", "86400")
    _ctr(config, "containers", "create", "docker.io/library/demo-stopped:latest", "demo-stopped", "/bin/true")
    _ctr(config, "images", "label", "docker.io/library/demo-pinned:latest", "io.cri-containerd.pinned=pinned")
    _, cli = _prefix(config, target)
    print(
        f"loaded {len(images)} names into namespace {config.namespace}; try:\n"
        f"  {cli} rm demo-tags:1        # Untagged only: demo-tags:2 still names the image\n"
        f"  {cli} rm demo               # Untagged + Deleted\n"
        f"  {cli} rm demo-running       # refused: a running container uses it (FAILED_PRECONDITION IMAGE_CONFLICT)\n"
        f"  {cli} rm demo-stopped       # refused without -f: a stopped container uses it; -f removes the name\n"
        f"  {cli} rm demo-pinned        # refused: pinned images are protected (IMAGE_PROTECTED)\n"
        f"  {cli} rm nothing-here       # No such image (NOT_FOUND); --allow-missing makes it success\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo")
    parser.add_argument("command", choices=["sample", "hints", "load"])
    args, server_flags = parser.parse_known_args(argv)
    if args.command == "sample":
        print(write_sample())
        return 0
    try:
        config = load_config(server_flags)
    except ConfigError:
        return 0 if args.command == "hints" else 2  # the server itself reports a bad flag
    return hints(config) if args.command == "hints" else load(config)


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    sys.exit(main())
