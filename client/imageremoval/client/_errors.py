"""Typed client errors, decoded from the server's gRPC status and its google.rpc.ErrorInfo detail."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.message import Error as ProtobufError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ImageRemovalError(Exception):
    """A removal failed: the gRPC code name plus the server's ErrorInfo (reason "" when it sent none)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "UNKNOWN",
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, reason={self.reason!r}, "
            f"domain={self.domain!r}, metadata={self.metadata!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes would be lost by Exception's default pickling (args only).
        return (_rebuild, (type(self), self.message, self.code, self.reason, self.domain, self.metadata))


class InvalidArgumentError(ImageRemovalError):
    """INVALID_ARGUMENT: the request is malformed (bad reference, namespace or platform, force required)."""


class NotFoundError(ImageRemovalError):
    """NOT_FOUND: no such image, or no such platform in it."""


class ConflictError(ImageRemovalError):
    """FAILED_PRECONDITION: a container still uses the image (IMAGE_CONFLICT)."""


class AbortedError(ImageRemovalError):
    """ABORTED: the image changed while it was being removed (IMAGE_CHANGED; retrying may succeed), containerd
    failed after a change (REMOVAL_INCOMPLETE; the metadata says what changed), or whether a change happened is
    unknown (OUTCOME_UNKNOWN; retry with the same request_id or with allow_missing)."""


class UnavailableError(ImageRemovalError):
    """UNAVAILABLE: the server or containerd cannot be reached; retrying is safe."""


class PermissionDeniedError(ImageRemovalError):
    """PERMISSION_DENIED: the caller may not remove this image."""


class DeadlineExceededError(ImageRemovalError):
    """DEADLINE_EXCEEDED: the call did not finish within its timeout; the removal may have happened."""


_BY_CODE: dict[str, type[ImageRemovalError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "FAILED_PRECONDITION": ConflictError,
    "ABORTED": AbortedError,
    "UNAVAILABLE": UnavailableError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
}


def _rebuild(
    cls: type[ImageRemovalError], message: str, code: str, reason: str, domain: str, metadata: dict[str, str]
) -> ImageRemovalError:
    return cls(message, code=code, reason=reason, domain=domain, metadata=metadata)


def make_error(
    message: str, *, code: str, reason: str = "", domain: str = "", metadata: Mapping[str, str] | None = None
) -> ImageRemovalError:
    """The error subclass for `code` (the base class for codes without one)."""
    cls = _BY_CODE.get(code, ImageRemovalError)
    return cls(message, code=code, reason=reason, domain=domain, metadata=metadata)


def status_from_metadata(metadata: Iterable[Any] | None) -> status_pb2.Status | None:
    """Parse the `grpc-status-details-bin` trailer; None when absent or not a google.rpc.Status."""
    if metadata is None:
        return None
    try:
        for entry in metadata:
            try:
                key, value = entry
            except (TypeError, ValueError):
                continue
            if key != STATUS_DETAILS_KEY:
                continue
            if isinstance(value, str):  # should be bytes (a "-bin" key); tolerate a decoded value
                value = value.encode("latin-1", errors="replace")
            if not isinstance(value, bytes | bytearray | memoryview):
                return None
            return status_pb2.Status.FromString(bytes(value))
    except (ProtobufError, TypeError, ValueError):
        return None
    return None


def _error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    """The first ErrorInfo among the details (the server puts it first); None if there is none."""
    if status is None:
        return None
    for detail in status.details:
        if not detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            continue
        info = error_details_pb2.ErrorInfo()
        try:
            if detail.Unpack(info):
                return info
        except ProtobufError:
            continue
    return None


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status of a failed call: grpcio-status for sync calls, the trailer otherwise."""
    if isinstance(error, grpc.Call):
        try:
            status: status_pb2.Status | None = rpc_status.from_call(error)
        except (ProtobufError, TypeError, ValueError):
            status = None  # e.g. code or message in the proto disagree with the call's; read the trailer
        if status is not None:
            return status
    try:
        trailers = error.trailing_metadata()
    except Exception:  # an RpcError raised by other code may not carry call state
        return None
    return status_from_metadata(trailers)


def from_rpc_error(error: grpc.RpcError) -> ImageRemovalError:
    """Convert a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`) to a typed error."""
    try:
        status_code: grpc.StatusCode | None = error.code()
    except Exception:
        status_code = None
    code = status_code.name if isinstance(status_code, grpc.StatusCode) else "UNKNOWN"
    try:
        details: str | None = error.details()
    except Exception:
        details = None
    status = _rich_status(error)
    info = _error_info(status)
    message = details or (status.message if status is not None else "") or code
    if info is None:
        return make_error(message, code=code)
    return make_error(message, code=code, reason=info.reason, domain=info.domain, metadata=dict(info.metadata.items()))
