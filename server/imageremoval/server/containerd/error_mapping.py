"""containerd's status codes -> our errors, in one place: every call to containerd runs inside `mapped`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import grpc

from imageremoval.server.domain.errors import (
    AlreadyExistsInContainerd,
    ContainerdFailed,
    ContainerdUnavailable,
    DeadlineExceeded,
    NotFoundInContainerd,
)

_log = logging.getLogger(__name__)


def translate(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """The error a failed containerd call `what` stands for; the only place that reads containerd's codes."""
    code = exc.code()
    detail = exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundInContainerd(f"{what}: {detail}")
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExistsInContainerd(f"{what}: {detail}")
    if code == grpc.StatusCode.UNAVAILABLE:
        # gRPC's detail names the socket path and the OS error: for the server log, not for clients.
        _log.debug("containerd is unavailable (%s): %s", what, detail)
        unavailable = ContainerdUnavailable(f"containerd is unavailable ({what})", {"operation": what})
        unavailable.add_note(detail)
        return unavailable
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"deadline exceeded waiting for containerd ({what})", {"operation": what})
    return ContainerdFailed(
        f"containerd failed ({what}): {code.name}: {detail}", {"operation": what, "containerdCode": code.name}
    )


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Run a containerd call (unary or a whole stream) with its failure turned into our error."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise translate(exc, what) from None
