"""Bad input of any size or shape becomes INVALID_ARGUMENT with an ErrorInfo, not gRPC's INTERNAL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from .errors import InvalidArgument, Reason, RemovalError
from .status import abort

# gRPC itself refuses messages beyond this (RESOURCE_EXHAUSTED) before any handler sees them.
TRANSPORT_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Rejected:
    """What the tolerant deserializer hands the handler instead of raising."""

    reason: Reason
    message: str


def _tolerant(deserializer: Callable[[bytes], Any] | None, limit: int) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        if len(data) > limit:
            return _Rejected(Reason.REQUEST_TOO_LARGE, f"request of {len(data)} bytes is over the {limit}-byte limit")
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except Exception:  # protobuf raises DecodeError and friends; any of them means "not our message"
            return _Rejected(Reason.MALFORMED_REQUEST, "request is not a valid protobuf message of the method's type")

    return parse


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Parses our service's requests itself, so oversized or garbled bytes get a proper status."""

    def __init__(
        self, service_prefix: str, limit: int, on_reject: Callable[[str, RemovalError], None] | None = None
    ) -> None:
        self._prefix = service_prefix
        self._limit = limit
        self._on_reject = on_reject  # logs and counts each refusal (metrics.RequestRejections)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or handler.unary_unary is None or not method.startswith(self._prefix):
            return handler
        behavior = handler.unary_unary
        on_reject = self._on_reject

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, _Rejected):
                error = InvalidArgument(request.reason, request.message)
                if on_reject is not None:
                    on_reject(method, error)
                await abort(context, error)
            return await behavior(request, context)  # type: ignore[arg-type]

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=_tolerant(handler.request_deserializer, self._limit),
            response_serializer=handler.response_serializer,
        )
