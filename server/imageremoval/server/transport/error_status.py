"""The one table from domain errors to gRPC status codes, with google.rpc details clients can parse."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from imageremoval.server.domain.errors import DOMAIN, ErrorKind, ImageConflict, RemovalError

CODES: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.ABORTED: grpc.StatusCode.ABORTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
STATUS_DETAILS_KEY = "grpc-status-details-bin"
_MAX_MESSAGE = 1024


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def rich_status(error: RemovalError) -> tuple[grpc.StatusCode, str, status_pb2.Status]:
    """Code, message and the google.rpc.Status (ErrorInfo first, then what helps a client act)."""
    code = CODES[error.kind]
    message = error.message if len(error.message) <= _MAX_MESSAGE else error.message[:_MAX_MESSAGE] + "..."
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason.value, domain=DOMAIN, metadata=error.metadata))]
    if isinstance(error, ImageConflict):
        subject = f"container/{error.container}" if error.container else f"image/{error.image_id}"
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=error.conflict.value, subject=subject, description=message
                        )
                    ]
                )
            )
        )
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type="containerd.image", resource_name=error.image_id, description=message
                )
            )
        )
    status = status_pb2.Status(code=_code_number(code), message=message, details=details)
    return code, message, status


def _code_number(code: grpc.StatusCode) -> int:
    value = code.value[0]
    assert isinstance(value, int)
    return value if value in code_pb2.Code.values() else code_pb2.UNKNOWN


async def abort(context: grpc.aio.ServicerContext[object, object], error: RemovalError) -> None:
    """End the call with the error's status; set on the context too, so interceptors record the code."""
    code, message, status = rich_status(error)
    trailers = ((STATUS_DETAILS_KEY, status.SerializeToString()),)
    context.set_code(code)
    context.set_details(message)
    await context.abort(code, message, trailing_metadata=trailers)
