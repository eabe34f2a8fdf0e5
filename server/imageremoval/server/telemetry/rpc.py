"""gRPC spans and durations under the current RPC semantic conventions, without traceback noise for answers.

Hand-written rather than opentelemetry-instrumentation-grpc (0.66b2), which emits the 1.11 names
(`net.peer.ip`), records a Python traceback event for every `context.abort`, marks every non-OK containerd call
an error span (an absent blob is an answer), and has no RPC stability opt-in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.logs import CALLER, Caller
from imageremoval.server.telemetry.metrics import meter
from imageremoval.server.transport.credentials import peer_identities
from imageremoval.server.transport.input_guard import respond


def dup_mode(environ: Mapping[str, str]) -> bool:
    """OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup: emit the deprecated RPC names as well as the current ones."""
    values = {v.strip() for v in environ.get(t.SEMCONV_OPT_IN, "").split(",")}
    return t.SEMCONV_DUP in values


def _code_name(code: grpc.StatusCode | None) -> str:
    return (code or grpc.StatusCode.OK).name


def peer_attributes(peer: str) -> dict[str, Any]:
    """`ipv4:10.0.0.1:5000`, `ipv6:[::1]:5000` or `unix:/path` as client.*/network.* attributes."""
    if peer.startswith("unix:"):
        path = peer.removeprefix("unix:")
        return {t.TRANSPORT: "unix", **({t.CLIENT_ADDRESS: path, t.PEER_ADDRESS: path} if path else {})}
    _, _, rest = peer.partition(":")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return {}
    host = unquote(host).strip("[]")
    return {
        t.TRANSPORT: "tcp",
        t.CLIENT_ADDRESS: host,
        t.CLIENT_PORT: int(port),
        t.PEER_ADDRESS: host,
        t.PEER_PORT: int(port),
    }


class _Durations:
    """rpc.server.call.duration (s) and, in dup mode, the deprecated rpc.server.duration (ms)."""

    def __init__(self, provider: MeterProvider, dup: bool) -> None:
        ours = meter(provider)
        self._seconds = ours.create_histogram(t.METRIC_RPC_DURATION, unit="s", description="Duration of inbound RPCs")
        self._millis = (
            ours.create_histogram(t.METRIC_OLD_RPC_DURATION, unit="ms", description="Duration of inbound RPCs")
            if dup
            else None
        )

    def record(self, seconds: float, method: str, code: grpc.StatusCode) -> None:
        attributes: dict[str, Any] = {t.RPC_SYSTEM_NAME: "grpc", t.RPC_METHOD: method, t.RPC_STATUS: code.name}
        if code.name in t.SERVER_ERRORS:
            attributes[t.ERROR_TYPE] = code.name
        self._seconds.record(seconds, attributes)
        if self._millis is not None:
            service, _, name = method.partition("/")
            self._millis.record(
                seconds * 1000,
                {
                    t.OLD_RPC_SYSTEM: "grpc",
                    t.OLD_RPC_SERVICE: service,
                    t.RPC_METHOD: name,
                    t.OLD_RPC_STATUS: code.value[0],
                },
            )


class ServerTelemetry(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Outermost interceptor: the caller for log lines, the server span and the RPC duration, in one layer.

    Being outermost, it also covers what the inner layers refuse (AnswerEveryCall's zero-message calls, the
    guard's garbled or oversized requests), which by then are served as request-streaming methods.
    Health and reflection get the caller only (a probe every few seconds is not worth a span or a series).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: MeterProvider | None,
        *,
        dup: bool = False,
    ) -> None:
        self._tracer = tracer_provider.get_tracer(t.TRACER_NAME, schema_url=t.SCHEMA_URL) if tracer_provider else None
        self._durations = _Durations(meter_provider, dup) if meter_provider else None
        self._dup = dup

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = (handler_call_details.method or "").lstrip("/")
        observed = not method.startswith("grpc.")
        options: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        many = handler.request_streaming
        if handler.response_streaming:
            streaming = self._streaming(handler.stream_stream if many else handler.unary_stream, method, observed)
            if many:
                return grpc.stream_stream_rpc_method_handler(streaming, **options)
            return grpc.unary_stream_rpc_method_handler(streaming, **options)
        unary = self._unary(handler.stream_unary if many else handler.unary_unary, method, observed)
        if many:
            return grpc.stream_unary_rpc_method_handler(unary, **options)
        return grpc.unary_unary_rpc_method_handler(unary, **options)

    def _enter(self, request: Any, context: grpc.aio.ServicerContext[Any, Any], method: str) -> Any:
        """Set the caller; returns the request, or for a request stream one that notes the request ID."""
        CALLER.set(
            Caller(
                method=method,
                peer=context.peer() or "",
                identities=tuple(peer_identities(context.auth_context())),
                request_id=_request_id(request),
            )
        )
        if hasattr(request, "__aiter__"):
            return _noting_request_id(request)
        return request

    def _span(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        assert self._tracer is not None
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        attributes: dict[str, Any] = {t.RPC_SYSTEM_NAME: "grpc", t.RPC_METHOD: method}
        attributes.update(peer_attributes(context.peer()))
        if self._dup:
            service = method.partition("/")[0]
            attributes.update({t.OLD_RPC_SYSTEM: "grpc", t.OLD_RPC_SERVICE: service})
        return self._tracer.start_as_current_span(
            method,
            context=propagate.extract(metadata),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def _finish(self, span: trace.Span | None, method: str, code: grpc.StatusCode, start: float, details: str) -> None:
        if span is not None:
            span.set_attribute(t.RPC_STATUS, code.name)
            if self._dup:
                span.set_attribute(t.OLD_RPC_STATUS, code.value[0])
            if code.name in t.SERVER_ERRORS:
                span.set_attribute(t.ERROR_TYPE, code.name)
                span.set_status(Status(StatusCode.ERROR, details or code.name))
        if self._durations is not None:
            self._durations.record(time.perf_counter() - start, method, code)

    async def _observe(
        self, run: Callable[[], Awaitable[Any]], method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Run the call inside its span, then record its status and duration."""
        start = time.perf_counter()
        with self._span(method, context) if self._tracer is not None else _no_span() as span:
            code = grpc.StatusCode.OK
            try:
                reply = await run()
                code = context.code() or grpc.StatusCode.OK
                return reply
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException as exc:
                code = context.code() or grpc.StatusCode.UNKNOWN
                if span is not None and not isinstance(exc, grpc.aio.AbortError):
                    span.record_exception(exc)  # a fault, not an answer: keep its traceback
                raise
            finally:
                self._finish(span, method, code, start, context.details() or "")

    def _unary(self, behavior: Any, method: str, observed: bool) -> Any:
        watched = observed and (self._tracer is not None or self._durations is not None)

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request = self._enter(request, context, method)
            if not watched:
                return await behavior(request, context)
            return await self._observe(lambda: behavior(request, context), method, context)

        return call

    def _streaming(self, behavior: Any, method: str, observed: bool) -> Any:
        """Response streams, whether the behaviour is an async generator or writes with context.write."""
        watched = observed and (self._tracer is not None or self._durations is not None)

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            request = self._enter(request, context, method)
            if not watched:
                await respond(behavior(request, context), context)
                return
            await self._observe(lambda: respond(behavior(request, context), context), method, context)

        return call


def _request_id(request: Any) -> str:
    request_id = getattr(request, "request_id", "")  # RemoveImageRequest field 8, where the API has it
    return request_id if isinstance(request_id, str) else ""


async def _noting_request_id(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Passes a request stream through; the first message's request ID goes on the caller for the logs."""
    async for request in requests:
        caller, request_id = CALLER.get(), _request_id(request)
        if caller is not None and request_id and not caller.request_id:
            CALLER.set(replace(caller, request_id=request_id))
        yield request


class _no_span:  # noqa: N801 - used like contextlib.nullcontext
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class ContainerdTracing(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """A client span per containerd call, carrying the trace on; containerd's answers are not error spans."""

    def __init__(self, tracer_provider: trace.TracerProvider, address: str) -> None:
        self._tracer = tracer_provider.get_tracer(t.TRACER_NAME, schema_url=t.SCHEMA_URL)
        self._address = address.removeprefix("unix://").removeprefix("unix:")

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        raw = details.method
        method = (raw.decode() if isinstance(raw, bytes) else str(raw)).lstrip("/")
        span = self._tracer.start_span(
            method,
            kind=SpanKind.CLIENT,
            attributes={
                t.RPC_SYSTEM_NAME: "grpc",
                t.RPC_METHOD: method,
                t.SERVER_ADDRESS: self._address,
                t.TRANSPORT: "unix",
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(tuple(details.metadata or ())), *carrier.items())
        return span, grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    @staticmethod
    def _end(span: trace.Span, code: grpc.StatusCode, details: str) -> None:
        span.set_attribute(t.RPC_STATUS, code.name)
        if code.name not in t.CONTAINERD_ANSWERS:
            span.set_attribute(t.ERROR_TYPE, code.name)
            span.set_status(Status(StatusCode.ERROR, details or code.name))
        span.end()

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if not is_instrumentation_enabled():
            return await continuation(client_call_details, request)
        span, details = self._start(client_call_details)
        try:
            call = await continuation(details, request)
            code = await call.code()
            self._end(span, code, await call.details() or "")
        except grpc.aio.AioRpcError as exc:
            self._end(span, exc.code(), exc.details() or "")
            raise
        except BaseException:
            self._end(span, grpc.StatusCode.CANCELLED, "")
            raise
        return call

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if not is_instrumentation_enabled():
            return await continuation(client_call_details, request)
        span, details = self._start(client_call_details)
        call = await continuation(details, request)
        return self._stream(span, call)

    async def _stream(self, span: trace.Span, call: Any) -> AsyncIterator[Any]:
        code, message, stopped = grpc.StatusCode.OK, "", False
        try:
            async for reply in call:
                yield reply
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), exc.details() or ""
            raise
        except (GeneratorExit, asyncio.CancelledError):
            stopped = True  # we stopped reading (enough bytes, or the caller went away): not containerd's fault
            raise
        finally:
            if stopped:
                span.set_attribute(t.RPC_STATUS, grpc.StatusCode.CANCELLED.name)
                span.end()
            else:
                self._end(span, code, message)
