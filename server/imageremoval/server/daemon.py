"""Start and stop a private containerd (own root, state and socket; CRI off) for `make run` and the tests."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_log = logging.getLogger(__name__)

# Plugins a removal service never needs; disabling them keeps the private daemon small and predictable.
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes; keep a margin for the .ttrpc suffix


class DaemonError(RuntimeError):
    """The private containerd could not be started."""


def _config_toml(root: Path, state: Path, address: str) -> str:
    plugins = ", ".join(f'"{name}"' for name in DISABLED_PLUGINS)
    return (
        "version = 2\n"
        f'root = "{root}"\n'
        f'state = "{state}"\n'
        f"disabled_plugins = [{plugins}]\n"
        "[grpc]\n"
        f'  address = "{address}"\n'
        "[ttrpc]\n"
        f'  address = "{address}.ttrpc"\n'
        "[debug]\n"
        '  level = "info"\n'
    )


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it does not exit in time; nothing if it is gone."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class PrivateContainerd:
    """A containerd process of our own; use as a context manager or call start() and stop()."""

    def __init__(self, base_dir: Path, binary: str = "containerd") -> None:
        self.base_dir = base_dir.resolve()
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Path = self.base_dir / "containerd.log"
        socket_dir = self.base_dir
        if len(str(socket_dir / "containerd.sock")) > _SOCKET_PATH_LIMIT:
            # A deep checkout would overflow sun_path: keep the socket in a short, stable temp folder.
            tag = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
            socket_dir = Path(tempfile.gettempdir()) / f"imageremoval-{tag}"
        self.address = str(socket_dir / "containerd.sock")

    def start(self, timeout: float = 30.0) -> str:
        """Start containerd and wait until its socket accepts connections; returns the socket path."""
        path = shutil.which(self.binary)
        if path is None:
            raise DaemonError(
                f"{self.binary!r} is not installed: run `make run` (it installs Debian's containerd, runc) "
                "or pass --containerd-address"
            )
        root, state = self.base_dir / "root", self.base_dir / "state"
        for folder in (root, state, Path(self.address).parent):
            folder.mkdir(parents=True, exist_ok=True, mode=0o711)
        with contextlib.suppress(FileNotFoundError):
            Path(self.address).unlink()
        config = self.base_dir / "config.toml"
        config.write_text(_config_toml(root, state, self.address))
        with self._log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [path, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DaemonError(f"containerd exited with {self._process.returncode}; see {self._log_file}")
            if self._accepts_connections():
                _log.info("private containerd ready", extra={"address": self.address, "root": str(root)})
                return self.address
            time.sleep(0.05)
        self.stop()
        raise DaemonError(f"containerd did not open {self.address} within {timeout:g}s; see {self._log_file}")

    def _accepts_connections(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(self.address)
            except OSError:
                return False
        return True

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; idempotent."""
        process, self._process = self._process, None
        terminate(process, timeout)

    def __enter__(self) -> PrivateContainerd:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
