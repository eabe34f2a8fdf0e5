"""Bad input of any size or shape, to any service on the port, becomes INVALID_ARGUMENT with an ErrorInfo."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from imageremoval.server.domain.errors import InvalidArgument, Reason, RemovalError
from imageremoval.server.transport.error_status import abort

Behavior = Callable[..., Any]  # gRPC types handlers loosely; sync and aio stubs disagree
OnReject = Callable[[str, RemovalError], None]


def transport_limit(limit: int) -> int:
    """gRPC's own receive limit: ours plus as much again (at least 1 MiB), so a request somewhat over ours still
    gets our ErrorInfo, log line and count, while nothing far larger is buffered or inflated in full (gRPC
    refuses it as it arrives: RESOURCE_EXHAUSTED, without ErrorInfo)."""
    return limit + max(limit, 1024 * 1024)


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


async def _refuse(
    context: grpc.aio.ServicerContext[Any, Any], method: str, error: RemovalError, on_reject: OnReject | None
) -> None:
    if on_reject is not None:
        on_reject(method, error)
    await abort(context, error)


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Parses every method's requests itself (ours, health, reflection), so oversized or garbled bytes get a
    proper status, a log line and a count."""

    def __init__(self, limit: int, on_reject: OnReject | None = None) -> None:
        self._limit = limit
        self._on_reject = on_reject  # logs and counts each refusal (metrics.RequestRejections)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method or ""
        on_reject = self._on_reject
        parse = _tolerant(handler.request_deserializer, self._limit)
        serialize = handler.response_serializer

        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, _Rejected):
                await _refuse(context, method, InvalidArgument(request.reason, request.message), on_reject)
            return request

        async def each(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async for request in requests:
                yield await checked(request, context)

        if handler.unary_unary is not None:
            unary: Behavior = handler.unary_unary

            async def guarded_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                return await unary(await checked(request, context), context)

            return grpc.unary_unary_rpc_method_handler(guarded_unary, parse, serialize)
        if handler.unary_stream is not None:
            streaming: Behavior = handler.unary_stream

            async def guarded_unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
                await respond(streaming(await checked(request, context), context), context)

            return grpc.unary_stream_rpc_method_handler(guarded_unary_stream, parse, serialize)
        if handler.stream_unary is not None:
            gathering: Behavior = handler.stream_unary

            async def guarded_stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                return await gathering(each(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(guarded_stream_unary, parse, serialize)
        assert handler.stream_stream is not None
        both: Behavior = handler.stream_stream

        async def guarded_stream_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await respond(both(each(requests, context), context), context)

        return grpc.stream_stream_rpc_method_handler(guarded_stream_stream, parse, serialize)


async def respond(result: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Run a streaming behaviour written either as an async generator or with context.write."""
    if inspect.isawaitable(result):
        await result
        return
    async for response in result:
        await context.write(response)


class AnswerEveryCall(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Just inside ServerTelemetry (so its refusals carry the caller, a span and a duration): serves unary
    methods as request-streaming ones, so a call whose client half-closed without a message is answered
    (INVALID_ARGUMENT MALFORMED_REQUEST). gRPC leaves such a unary call unanswered, holding the shutdown for
    the whole grace period."""

    def __init__(self, on_reject: OnReject | None = None) -> None:
        self._on_reject = on_reject

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method or ""
        on_reject = self._on_reject

        async def only(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async for request in requests:
                return request
            error = InvalidArgument(Reason.MALFORMED_REQUEST, "the call ended without a request message")
            await _refuse(context, method, error, on_reject)
            return None  # not reached: abort raises

        parse, serialize = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            unary: Behavior = handler.unary_unary

            async def one_then_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                return await unary(await only(requests, context), context)

            return grpc.stream_unary_rpc_method_handler(one_then_unary, parse, serialize)
        assert handler.unary_stream is not None
        streaming: Behavior = handler.unary_stream

        async def one_then_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await respond(streaming(await only(requests, context), context), context)

        return grpc.stream_stream_rpc_method_handler(one_then_stream, parse, serialize)
