"""The one table from error reasons to gRPC status codes, and the rich status (google.rpc details) of an error."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from imageremoval.gen.v1.error_reason_pb2 import ErrorReason
from imageremoval.server.domain.errors import DOMAIN, ImageConflict, Reason, RemovalError

_C = grpc.StatusCode
# Every ErrorReason of the API (error_reason.proto) and the one code it comes with; the README table and the
# proto comments say the same (tests/test_error_table.py).
CODES: Mapping[int, grpc.StatusCode] = MappingProxyType(
    {
        ErrorReason.INVALID_REFERENCE: _C.INVALID_ARGUMENT,
        ErrorReason.AMBIGUOUS_REFERENCE: _C.INVALID_ARGUMENT,
        ErrorReason.INVALID_NAMESPACE: _C.INVALID_ARGUMENT,
        ErrorReason.INVALID_PLATFORM: _C.INVALID_ARGUMENT,
        ErrorReason.FORCE_REQUIRED: _C.INVALID_ARGUMENT,
        ErrorReason.INVALID_SELECTOR: _C.INVALID_ARGUMENT,
        ErrorReason.INVALID_PAGE_TOKEN: _C.INVALID_ARGUMENT,
        ErrorReason.INVALID_PLAN: _C.INVALID_ARGUMENT,
        ErrorReason.INVALID_RECLAIM_TARGET: _C.INVALID_ARGUMENT,
        ErrorReason.INVALID_REQUEST_ID: _C.INVALID_ARGUMENT,
        ErrorReason.MALFORMED_REQUEST: _C.INVALID_ARGUMENT,
        ErrorReason.REQUEST_TOO_LARGE: _C.INVALID_ARGUMENT,
        ErrorReason.IMAGE_NOT_FOUND: _C.NOT_FOUND,
        ErrorReason.PLATFORM_NOT_FOUND: _C.NOT_FOUND,
        ErrorReason.IMAGE_CONFLICT: _C.FAILED_PRECONDITION,
        ErrorReason.IMAGE_PROTECTED: _C.FAILED_PRECONDITION,
        ErrorReason.PLATFORM_SHARED: _C.FAILED_PRECONDITION,
        ErrorReason.RECLAIM_UNAVAILABLE: _C.FAILED_PRECONDITION,
        ErrorReason.IMAGE_CHANGED: _C.ABORTED,
        ErrorReason.REMOVAL_INCOMPLETE: _C.ABORTED,
        ErrorReason.OUTCOME_UNKNOWN: _C.ABORTED,
        ErrorReason.NAMESPACE_NOT_ALLOWED: _C.PERMISSION_DENIED,
        ErrorReason.TOO_MANY_REMOVALS: _C.RESOURCE_EXHAUSTED,
        ErrorReason.CONTAINERD_UNAVAILABLE: _C.UNAVAILABLE,
        ErrorReason.DEADLINE_EXCEEDED: _C.DEADLINE_EXCEEDED,
        ErrorReason.CONTAINERD_ERROR: _C.INTERNAL,
        ErrorReason.INTERNAL: _C.INTERNAL,
    }
)
_MAX_MESSAGE = 1024


def code_of(reason: Reason) -> grpc.StatusCode:
    """The gRPC code a reason always comes with (the domain's reasons are the enum's names)."""
    return CODES[ErrorReason.Value(reason.value)]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def rich_status(error: RemovalError) -> status_pb2.Status:
    """The google.rpc.Status of an error: its code and (clipped) message, ErrorInfo first, then, for a conflict,
    a PreconditionFailure and a ResourceInfo that say what refused the deletion."""
    message = error.message if len(error.message) <= _MAX_MESSAGE else error.message[:_MAX_MESSAGE] + "..."
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason.value, domain=DOMAIN, metadata=error.metadata))]
    if isinstance(error, ImageConflict):
        subject = f"container/{error.container}" if error.container else f"image/{error.image_id}"
        violation = error_details_pb2.PreconditionFailure.Violation(
            type=error.conflict.value, subject=subject, description=message
        )
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[violation])))
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type="containerd.image", resource_name=error.image_id, description=message
                )
            )
        )
    code = code_of(error.reason).value[0]
    assert isinstance(code, int)
    return status_pb2.Status(code=code, message=message, details=details)


async def abort(context: grpc.aio.ServicerContext[object, object], error: RemovalError) -> None:
    """End the call with the error's status (grpcio-status packs the trailer); set on the context too, so
    interceptors record the code."""
    status = rpc_status.to_status(rich_status(error))
    context.set_code(status.code)
    context.set_details(status.details)
    await context.abort(status.code, status.details, trailing_metadata=status.trailing_metadata)
