"""gRPC spans and durations under the current RPC semantic conventions, without traceback noise for answers.

Hand-written rather than opentelemetry-instrumentation-grpc (0.66b2), which emits the 1.11 names
(`net.peer.ip`), records a Python traceback event for every `context.abort`, marks every non-OK containerd call
an error span (an absent blob is an answer), and has no RPC stability opt-in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import telemetry as t
from .logs import CALLER, Caller
from .observability import service_version
from .security import peer_identities


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
        meter = provider.get_meter(t.METER_NAME, service_version(), schema_url=t.SCHEMA_URL)
        self._seconds = meter.create_histogram(t.METRIC_RPC_DURATION, unit="s", description="Duration of inbound RPCs")
        self._millis = (
            meter.create_histogram(t.METRIC_OLD_RPC_DURATION, unit="ms", description="Duration of inbound RPCs")
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
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, observed),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and observed:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _enter(self, request: Any, context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
        request_id = getattr(request, "request_id", "")  # RemoveImageRequest field 8, where the API has it
        CALLER.set(
            Caller(
                method=method,
                peer=context.peer() or "",
                identities=tuple(peer_identities(context.auth_context())),
                request_id=request_id if isinstance(request_id, str) else "",
            )
        )

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

    def _unary(self, behavior: Any, method: str, observed: bool) -> Any:
        tracing = self._tracer is not None and observed
        measuring = self._durations is not None and observed

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self._enter(request, context, method)
            if not tracing and not measuring:
                return await behavior(request, context)
            start = time.perf_counter()
            with self._span(method, context) if tracing else _no_span() as span:
                code = grpc.StatusCode.OK
                try:
                    reply = await behavior(request, context)
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

        return call

    def _unary_stream(self, behavior: Any, method: str) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            self._enter(request, context, method)
            start = time.perf_counter()
            with self._span(method, context) if self._tracer is not None else _no_span() as span:
                code = grpc.StatusCode.OK
                try:
                    async for reply in behavior(request, context):
                        yield reply
                    code = context.code() or grpc.StatusCode.OK
                except (asyncio.CancelledError, GeneratorExit):
                    code = grpc.StatusCode.CANCELLED
                    raise
                except BaseException as exc:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    if span is not None and not isinstance(exc, grpc.aio.AbortError):
                        span.record_exception(exc)
                    raise
                finally:
                    self._finish(span, method, code, start, context.details() or "")

        return call


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
