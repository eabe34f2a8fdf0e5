"""Binding the listen addresses safely: a taken port or a path that is not a stale socket stops the start."""

from __future__ import annotations

import contextlib
import errno
import socket
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imageremoval.server.config import is_unix, parse_listen, unix_path

SOCKET_MODE = 0o660  # owner and group only: removing images is a privileged act


class ListenError(OSError):
    """An address cannot be served; the message says why, in one line."""


def check_port_free(host: str, port: int) -> None:
    """Refuse a TCP port something already listens on (gRPC's SO_REUSEPORT would share it silently)."""
    if port == 0:
        return
    try:
        resolved = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, address in resolved:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is fine
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ListenError(f"cannot listen on {host}:{port}: the port is already in use") from None
                # Anything else (say, no IPv6 for "localhost"): gRPC binds what it can and reports the rest.


def check_listeners(addresses: Iterable[str]) -> None:
    """Every address is free to serve on (checked before a private containerd is started for us)."""
    for address in addresses:
        if is_unix(address):
            _refuse_unless_stale(unix_path(address))
        else:
            check_port_free(*parse_listen(address))


def _refuse_unless_stale(path: Path) -> None:
    """Only a socket nobody listens on may be replaced; anything else at the path is left alone."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix://{path}: it exists and is not a socket (left untouched)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return  # a stale socket from a previous run
        except OSError as exc:
            raise ListenError(f"cannot listen on unix://{path}: {exc.strerror}") from None
    raise ListenError(f"cannot listen on unix://{path}: a server is already listening there")


@dataclass
class UnixListener:
    """A unix socket bound in a private directory, given its final mode, then moved into place.

    Nobody can connect while the mode is being set, and a stale socket is replaced in one rename.
    """

    path: Path
    _staging: Path | None = None
    _inode: tuple[int, int] | None = None

    def prepare(self) -> str:
        """Check the path and return the gRPC address to bind (inside a 0700 staging directory)."""
        _refuse_unless_stale(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix=".ir", dir=self.path.parent))
        return f"unix:{self._staging / 's'}"

    def publish(self) -> None:
        """Give the bound socket its mode and move it to its path."""
        assert self._staging is not None
        staged = self._staging / "s"
        try:
            staged.chmod(SOCKET_MODE)
            _refuse_unless_stale(self.path)  # checked again: another server may have started meanwhile
            staged.rename(self.path)
            info = self.path.lstat()
            self._inode = (info.st_dev, info.st_ino)
        finally:
            self.discard_staging()

    def discard_staging(self) -> None:
        """Remove the staging directory (and a socket left in it)."""
        if self._staging is not None:
            with contextlib.suppress(FileNotFoundError):
                (self._staging / "s").unlink()
            with contextlib.suppress(OSError):
                self._staging.rmdir()
            self._staging = None

    def remove(self) -> None:
        """Unlink the socket at shutdown, only if it is still the one we created."""
        if self._inode is None:
            return
        with contextlib.suppress(FileNotFoundError):
            info = self.path.lstat()
            if (info.st_dev, info.st_ino) == self._inode:
                self.path.unlink()
        self._inode = None
