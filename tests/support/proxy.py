"""A real L7 proxy for tests: Debian's nginx terminating TLS and passing gRPC to the server over HTTP/2."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from imageremoval.server.containerd.daemon import terminate

from .waiting import wait_until

_SERVING = re.compile(r"serving imageremoval\.v1\.ImageRemovalService on 127\.0\.0\.1:(\d+)")


def free_port() -> int:
    """A port the OS has just handed out (nginx needs a number in its configuration)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class ServerProcess:
    """`imageremoval-server` as its own process, so SIGTERM is a real signal; its port is read from its log."""

    def __init__(self, folder: Path, containerd_address: str, args: Sequence[str] = ()) -> None:
        self.log = folder / "server.log"
        server = Path(sys.executable).parent / "imageremoval-server"
        command = [str(server), "--listen", "127.0.0.1:0", "--containerd-address", containerd_address,
                   "--log-format", "json", *args]  # fmt: skip
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self.port = 0
        if not wait_until(self._read_port, 30, ignoring=()):
            raise RuntimeError(f"timed out waiting for the server to listen (see {self.log})")

    def _read_port(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}: {self.log.read_text()}")
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                match = _SERVING.search(json.loads(line).get("message", ""))
                if match:
                    self.port = int(match.group(1))
        return self.port != 0

    def sigterm(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        terminate(self.process)


class Nginx:
    """nginx with a private prefix and configuration in a temp folder, on an ephemeral port."""

    def __init__(self, folder: Path, upstream_port: int, cert: Path, key: Path) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.prefix = folder / "nginx"
        self.prefix.mkdir()
        self.port = free_port()
        self.error_log = self.prefix / "error.log"
        conf = self.prefix / "nginx.conf"
        conf.write_text(_config(self.prefix, self.port, upstream_port, cert, key))
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.error_log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(self._listening, 15, ignoring=()):
            raise RuntimeError(f"timed out waiting for nginx to listen (see {self.error_log})")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited: {self.error_log.read_text()}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        terminate(self.process)


def _config(prefix: Path, port: int, upstream_port: int, cert: Path, key: Path) -> str:
    temp = "\n".join(
        f"  {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log {prefix}/access.log;
{temp}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      grpc_pass grpc://127.0.0.1:{upstream_port};
      grpc_connect_timeout 2s;
      grpc_read_timeout 60s;
      grpc_send_timeout 60s;
    }}
  }}
}}
"""
