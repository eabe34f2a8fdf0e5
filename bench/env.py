"""The benchmark's world: a private containerd, our server as a separate process, and the machine's facts."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imageremoval.server.containerd.daemon import terminate

REPO = Path(__file__).resolve().parent.parent
SERVER_BIN = Path(sys.executable).parent / "imageremoval-server"
CLI_BIN = Path(sys.executable).parent / "imageremoval"


class BenchError(RuntimeError):
    """The benchmark could not set up or run a step."""


def free_port() -> int:
    """A TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident set size of a process in MB: now (VmRSS) or its peak so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} for process {pid}")


class ServerProcess:
    """`imageremoval-server` as a subprocess, as in production; knows its start-to-SERVING time."""

    def __init__(
        self,
        containerd_address: str,
        log_path: Path,
        *,
        extra_args: tuple[str, ...] = (),
        binary: Path = SERVER_BIN,
        env: dict[str, str] | None = None,
    ) -> None:
        self.containerd_address = containerd_address
        self.log_path = log_path
        self.extra_args = extra_args
        self.binary = binary
        self.env = env
        self.port = 0
        self.seconds_to_serving = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """host:port for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process ID."""
        if self._process is None:
            raise BenchError("the server is not running")
        return self._process.pid

    def start(self, timeout: float = 30.0) -> float:
        """Start the server and wait until health says SERVING; returns the seconds that took."""
        self.port = free_port()
        command = [
            str(self.binary),
            "--listen",
            self.target,
            "--containerd-address",
            self.containerd_address,
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            started = time.perf_counter()
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(self.env or {})}
            )
        deadline = started + timeout
        # Wait for the port first: a channel that tried too early backs off for a second or more.
        while not self._accepts():
            self._check_alive()
            if time.perf_counter() > deadline:
                self.stop()
                raise BenchError(f"the server did not listen within {timeout:g}s; see {self.log_path}")
            time.sleep(0.002)
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.perf_counter() > deadline:
                    self.stop()
                    raise BenchError(f"the server was not SERVING within {timeout:g}s; see {self.log_path}")
                time.sleep(0.002)
        self.seconds_to_serving = time.perf_counter() - started
        return self.seconds_to_serving

    def _accepts(self) -> bool:
        with socket.socket() as probe:
            try:
                probe.connect(("127.0.0.1", self.port))
            except OSError:
                return False
        return True

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise BenchError(f"the server exited with {self._process.returncode}; see {self.log_path}")

    def rss_mb(self, field: str = "VmRSS") -> float:
        """The server's resident memory now (or its peak with VmHWM)."""
        return rss_mb(self.pid, field)

    def cpu_seconds(self) -> float:
        """The server's CPU time so far."""
        return cpu_seconds(self.pid)

    def like(self, log_path: Path) -> ServerProcess:
        """Another server process with the same binary and arguments (not started)."""
        return ServerProcess(
            self.containerd_address, log_path, extra_args=self.extra_args, binary=self.binary, env=self.env
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the server drains and exits 0), SIGKILL if it hangs; idempotent."""
        process, self._process = self._process, None
        terminate(process, timeout)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _run(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _memory_gb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _git() -> dict[str, object]:
    commit = _run("git", "-C", str(REPO), "rev-parse", "HEAD")
    changed = [line[3:] for line in _run("git", "-C", str(REPO), "status", "--porcelain").splitlines() if line]
    return {
        "commit": commit,
        "changed_files": sorted(changed)[:50],  # uncommitted (or untracked) paths at the start of the run
        "changed_server_files": sorted(p for p in changed if p.startswith(("server/", "client/", "api/"))),
    }


def machine_facts(work_dir: Path) -> dict[str, object]:
    """Cores, CPU, memory, disk, kernel and versions: what a reader needs to compare figures."""
    import grpc as grpc_module

    ctr_version = _run("containerd", "--version")
    df = _run("df", "-h", str(work_dir)).splitlines()
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "os": _run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "disk_df": df[-1] if df else "",
        "disk_lsblk": _run("lsblk", "-d", "-o", "NAME,SIZE,ROTA,TYPE"),
        "filesystem": _run("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--target", str(work_dir)),
        "containerd": ctr_version,
        "python": platform.python_version(),
        "grpcio": grpc_module.__version__,
        "load_average_at_start": list(os.getloadavg()),
        "git": _git(),
    }


def require_tools() -> None:
    """containerd, ctr and our console scripts must be there, and we must be root."""
    missing = [tool for tool in ("containerd", "ctr") if shutil.which(tool) is None]
    missing += [str(path) for path in (SERVER_BIN, CLI_BIN) if not path.exists()]
    if missing:
        raise BenchError(f"not installed: {', '.join(missing)} (`make bench` installs them)")
    if os.geteuid() != 0:
        raise BenchError("containerd needs root: run the benchmark as root")
