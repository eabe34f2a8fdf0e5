"""Start and stop a private containerd (own root, state and socket; CRI off) for `make run` and the tests."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

_log = logging.getLogger(__name__)

# Plugins a removal service never needs; disabling them keeps the private daemon small and predictable.
_COMMON_DISABLED = (
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)
# 1.6 has one CRI plugin (and still ships aufs).
DISABLED_PLUGINS_1 = ("io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", *_COMMON_DISABLED)
# 2.x split CRI into several plugins; each loads (and logs "starting cri plugin") unless disabled by name.
DISABLED_PLUGINS_2 = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.cri.v1.images",
    "io.containerd.cri.v1.runtime",
    "io.containerd.podsandbox.controller.v1.podsandbox",
    *_COMMON_DISABLED,
)
DISABLED_PLUGINS = DISABLED_PLUGINS_1  # the default daemon (Debian's 1.6)
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes; keep a margin for the .ttrpc suffix
_VERSION_RE = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)\S*")
_CONFIG_VERSION_RE = re.compile(r"^version = (\d+)$", re.MULTILINE)
# bbolt holds an exclusive flock on the metadata database for as long as a containerd has the root open.
_METADATA_DB = Path("io.containerd.metadata.v1.bolt") / "meta.db"


class DaemonError(RuntimeError):
    """The private containerd could not be started."""


@dataclass(frozen=True, slots=True)
class ContainerdBinary:
    """A containerd executable and the version it reports (`containerd --version`)."""

    path: Path
    version: str  # e.g. "1.6.20~ds1" or "2.4.2+unknown"
    major: int
    config_version: int  # the config schema it reads without migrating (`containerd config default`)

    @classmethod
    def find(cls, binary: str = "containerd") -> ContainerdBinary:
        """Resolve binary (a name on PATH or a path) and ask it its version."""
        found = shutil.which(binary)
        if found is None:
            raise DaemonError(
                f"{binary!r} is not installed: run `make run` (it installs Debian's containerd, runc) "
                "or pass --containerd-address"
            )
        try:
            out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
            default = subprocess.run(
                [found, "config", "default"], capture_output=True, text=True, timeout=30, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise DaemonError(f"cannot ask {found} its version: {exc}") from None
        match = _VERSION_RE.search(out.split("containerd", 2)[-1]) or _VERSION_RE.search(out)
        schema = _CONFIG_VERSION_RE.search(default)
        if match is None or schema is None:
            raise DaemonError(f"cannot read the version of {found} from {out.strip()!r}")
        major = int(match.group(1))
        return cls(Path(found).resolve(), match.group(0).lstrip("v"), major, int(schema.group(1)))

    @property
    def disabled_plugins(self) -> tuple[str, ...]:
        """Every CRI plugin of this version, and the snapshotters and tracing we never use."""
        return DISABLED_PLUGINS_2 if self.major >= 2 else DISABLED_PLUGINS_1


def config_toml(binary: ContainerdBinary, root: Path, state: Path, address: str) -> str:
    """The private daemon's config, in the schema binary's version wants."""
    plugins = ", ".join(f'"{name}"' for name in binary.disabled_plugins)
    head = (
        f"version = {binary.config_version}\n"
        f'root = "{root}"\n'
        f'state = "{state}"\n'
        f"disabled_plugins = [{plugins}]\n"
        "[debug]\n"
        '  level = "info"\n'
    )
    if binary.config_version >= 4:  # 2.4+: the listeners are server plugins
        return (
            f"{head}[plugins.'io.containerd.server.v1.grpc']\n"
            f'  address = "{address}"\n'
            "[plugins.'io.containerd.server.v1.ttrpc']\n"
            f'  address = "{address}.ttrpc"\n'
        )
    return f'{head}[grpc]\n  address = "{address}"\n[ttrpc]\n  address = "{address}.ttrpc"\n'


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _locked_by_other(path: Path) -> bool:
    """Whether another process holds an exclusive flock on path (probed without waiting, then released)."""
    try:
        with path.open("rb") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


class PrivateContainerd:
    """A containerd process of our own; use as a context manager or call start() and stop().

    One per base directory: start() refuses while another containerd runs on the same root (ours or an
    orphan left by a killed parent) and never unlinks a socket that something still listens on.
    """

    def __init__(self, base_dir: Path, binary: str = "containerd") -> None:
        self.base_dir = base_dir.resolve()
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[bytes] | None = None
        self._log_file: Path = self.base_dir / "containerd.log"
        self._pid_file: Path = self.base_dir / "containerd.pid"
        self.root, self.state = self.base_dir / "root", self.base_dir / "state"
        self.version: ContainerdBinary | None = None
        socket_dir = self.base_dir
        if len(str(socket_dir / "containerd.sock")) > _SOCKET_PATH_LIMIT:
            # A deep checkout would overflow sun_path: keep the socket in a short, stable temp folder.
            tag = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
            socket_dir = Path(tempfile.gettempdir()) / f"imageremoval-{tag}"
        self.address = str(socket_dir / "containerd.sock")

    def start(self, timeout: float = 30.0) -> str:
        """Start containerd and wait until its socket accepts connections; returns the socket path."""
        binary = self.version = ContainerdBinary.find(self.binary)
        for folder in (self.root, self.state, Path(self.address).parent):
            folder.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._claim()
        config = self.base_dir / "config.toml"
        config.write_text(config_toml(binary, self.root, self.state, self.address))
        # Its own version's shim first: on a host with two containerds, PATH order would otherwise decide.
        env = {**os.environ, "PATH": os.pathsep.join([str(binary.path.parent), os.environ.get("PATH", "")])}
        try:
            with self._log_file.open("ab") as log:
                self._process = subprocess.Popen(
                    [str(binary.path), "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
        except OSError:
            self._release()
            raise
        self._pid_file.write_text(f"{self._process.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                self._release()
                raise DaemonError(f"containerd exited with {code}; see {self._log_file}")
            if self._accepts_connections():
                _log.info(
                    "private containerd %s ready",
                    binary.version,
                    extra={"address": self.address, "root": str(self.root), "containerdVersion": binary.version},
                )
                return self.address
            time.sleep(0.05)
        self.stop()
        raise DaemonError(f"containerd did not open {self.address} within {timeout:g}s; see {self._log_file}")

    def _claim(self) -> None:
        """Take the base directory: refuse if a containerd already runs on it; clear only a stale socket."""
        lock = (self.base_dir / "containerd.lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise DaemonError(self._running_message("another imageremoval-server holds its lock")) from None
        self._lock = lock
        try:
            if _locked_by_other(self.root / _METADATA_DB):
                raise DaemonError(self._running_message("its metadata database is locked"))
            pid = self._recorded_pid()
            if pid is not None and _pid_alive(pid) and self._is_ours(pid):
                raise DaemonError(self._running_message(f"pid {pid} is alive"))
            socket_path = Path(self.address)
            try:
                mode = socket_path.lstat().st_mode
            except FileNotFoundError:
                return
            if not stat.S_ISSOCK(mode):
                raise DaemonError(f"{socket_path} exists and is not a socket; not touching it")
            if self._accepts_connections():
                raise DaemonError(self._running_message("something listens on its socket"))
            socket_path.unlink()  # stale: nothing listens
        except BaseException:
            self._release()
            raise

    def _running_message(self, evidence: str) -> str:
        pid = self._recorded_pid()
        who = f" (pid {pid})" if pid is not None and _pid_alive(pid) else ""
        return (
            f"a containerd is already running on {self.root}{who}: {evidence}; its socket {self.address} is "
            "left alone. Stop that server (or containerd), or pass --run-dir for a second one, or "
            f"--containerd-address {self.address} to use it"
        )

    def _recorded_pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Whether pid is a containerd started with our config (pids are reused)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(self.base_dir / "config.toml").encode() in argv

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

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

    @property
    def pid(self) -> int | None:
        """The containerd process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; idempotent."""
        process, self._process = self._process, None
        terminate(process, timeout)
        if process is not None:
            with contextlib.suppress(FileNotFoundError):
                self._pid_file.unlink()
        self._release()

    def __enter__(self) -> PrivateContainerd:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
