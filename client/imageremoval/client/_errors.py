"""Typed client errors, decoded by grpcio-status from the server's status and its google.rpc.ErrorInfo detail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import Error as ProtobufError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from imageremoval.gen.v1.error_reason_pb2 import ConflictKind as ConflictKind
from imageremoval.gen.v1.error_reason_pb2 import ErrorReason as ErrorReason


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

    @property
    def error_reason(self) -> ErrorReason:
        """The reason as the API's enum (ErrorReason.ERROR_REASON_UNSPECIFIED when none or one it does not know)."""
        return _reason_value(self.reason)

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


class FailedPreconditionError(ImageRemovalError):
    """FAILED_PRECONDITION: the image cannot be removed as it is; the subclasses say why (a reason this client
    does not know raises this class itself)."""


class ConflictError(FailedPreconditionError):
    """IMAGE_CONFLICT: a container still uses the image, or several repositories name it (metadata `conflict`)."""

    @property
    def conflict_kind(self) -> ConflictKind:
        """The `conflict` metadata as the API's enum (CONFLICT_KIND_UNSPECIFIED when absent or unknown)."""
        try:
            return ConflictKind.Value(self.metadata.get("conflict", ""))  # type: ignore[return-value]
        except ValueError:
            return ConflictKind.CONFLICT_KIND_UNSPECIFIED


class ProtectedError(FailedPreconditionError):
    """IMAGE_PROTECTED: the image is pinned or matches the server's protected patterns; force does not help."""


class PlatformSharedError(FailedPreconditionError):
    """PLATFORM_SHARED: a requested platform's manifest also serves a platform that was not requested."""


class ReclaimUnavailableError(FailedPreconditionError):
    """RECLAIM_UNAVAILABLE: a usage-percent target, but the server cannot measure containerd's filesystem."""


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


class ResourceExhaustedError(ImageRemovalError):
    """RESOURCE_EXHAUSTED: too many removals in flight (TOO_MANY_REMOVALS), or a request far too large; retry
    later with backoff."""


_BY_CODE: dict[str, type[ImageRemovalError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "ABORTED": AbortedError,
    "UNAVAILABLE": UnavailableError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
}
# Reasons with a class of their own, each a subclass of its code's class (so no class catches another family).
_BY_REASON: dict[int, type[ImageRemovalError]] = {
    ErrorReason.IMAGE_CONFLICT: ConflictError,
    ErrorReason.IMAGE_PROTECTED: ProtectedError,
    ErrorReason.PLATFORM_SHARED: PlatformSharedError,
    ErrorReason.RECLAIM_UNAVAILABLE: ReclaimUnavailableError,
}


def _reason_value(reason: str) -> ErrorReason:
    try:
        return ErrorReason.Value(reason)  # type: ignore[return-value]
    except ValueError:
        return ErrorReason.ERROR_REASON_UNSPECIFIED


def _rebuild(
    cls: type[ImageRemovalError], message: str, code: str, reason: str, domain: str, metadata: dict[str, str]
) -> ImageRemovalError:
    return cls(message, code=code, reason=reason, domain=domain, metadata=metadata)


def make_error(
    message: str, *, code: str, reason: str = "", domain: str = "", metadata: Mapping[str, str] | None = None
) -> ImageRemovalError:
    """The error class for the reason's family when it has one of that code, else for `code` (else the base)."""
    cls = _BY_CODE.get(code, ImageRemovalError)
    by_reason = _BY_REASON.get(_reason_value(reason))
    if by_reason is not None and issubclass(by_reason, cls):
        cls = by_reason
    return cls(message, code=code, reason=reason, domain=domain, metadata=metadata)


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
    """The google.rpc.Status of a failed call (sync or aio), read by grpcio-status; None when there is none or
    it disagrees with the call's own code and message (then only the code is trusted)."""
    if not callable(getattr(error, "trailing_metadata", None)):
        return None  # an RpcError raised by other code may not carry call state
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)  # type: ignore[arg-type]
    except Exception:  # a trailer that is not a Status, or code/message that disagree with it
        return None
    return status


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
