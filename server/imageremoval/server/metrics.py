"""Removal metrics and the per-RPC duration: every outcome counted, not only successful deletes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.metrics import MeterProvider

from . import telemetry as t
from .errors import ImageConflict, RemovalError


class RemovalMetrics:
    """The instruments the removal records into; built once from the meter provider passed in."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(t.METER_NAME)
        self._duration = meter.create_histogram(
            t.METRIC_REMOVAL_DURATION,
            unit="s",
            description="Duration of image removals by action and outcome",
        )
        self._removals = meter.create_counter(
            t.METRIC_REMOVALS,
            unit="{removal}",
            description="Removal calls by action, outcome and error reason",
        )
        self._deleted = meter.create_counter(
            t.METRIC_IMAGES_DELETED, unit="{image}", description="Images (and platform manifests) deleted"
        )
        self._untagged = meter.create_counter(
            t.METRIC_REFERENCES_UNTAGGED, unit="{reference}", description="Image references (names) removed"
        )
        self._reclaimed = meter.create_counter(
            t.METRIC_BYTES_RECLAIMED, unit="By", description="Bytes of content freed by garbage collection"
        )
        self._conflicts = meter.create_counter(
            t.METRIC_CONFLICTS, unit="{conflict}", description="Removals refused because of a conflict"
        )

    def removal(
        self,
        *,
        action: str,
        seconds: float,
        error: RemovalError | None,
        missing: bool = False,
        cancelled: bool = False,
    ) -> None:
        """One finished call: its duration, outcome and, for a refusal, the reason."""
        if cancelled:
            outcome, reason = t.OUTCOME_CANCELLED, ""
        elif error is None:
            outcome = t.OUTCOME_MISSING if missing else t.OUTCOME_SUCCESS
            reason = ""
        else:
            outcome, reason = error.kind.value.lower(), error.reason.value
        attributes = {t.ATTR_METRIC_ACTION: action, t.ATTR_METRIC_OUTCOME: outcome}
        self._duration.record(seconds, attributes)
        self._removals.add(1, {**attributes, t.ATTR_METRIC_REASON: reason})
        if isinstance(error, ImageConflict):
            self._conflicts.add(
                1,
                {
                    t.ATTR_METRIC_CONFLICT: error.conflict.value,
                    t.ATTR_METRIC_FORCEABLE: "true" if error.forceable else "false",
                },
            )

    def prune(self, seconds: float) -> None:
        """The prune-parents phase, recorded as its own action."""
        self._duration.record(seconds, {t.ATTR_METRIC_ACTION: t.ACTION_PRUNE, t.ATTR_METRIC_OUTCOME: "success"})

    def items(self, namespace: str, *, deleted: int, untagged: int) -> None:
        if deleted:
            self._deleted.add(deleted, {t.ATTR_METRIC_NAMESPACE: namespace})
        if untagged:
            self._untagged.add(untagged, {t.ATTR_METRIC_NAMESPACE: namespace})

    def reclaimed(self, namespace: str, size: int) -> None:
        if size:
            self._reclaimed.add(size, {t.ATTR_METRIC_NAMESPACE: namespace})


class RpcDurationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """`rpc.server.duration` (ms) with rpc.system, rpc.service, rpc.method and rpc.grpc.status_code."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(t.METER_NAME)
        self._histogram = meter.create_histogram(
            t.METRIC_RPC_DURATION, unit="ms", description="Duration of inbound RPCs"
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method_path = handler_call_details.method or ""
        if handler is None or handler.unary_unary is None or method_path.startswith("/grpc."):
            return handler
        service, _, method = method_path.lstrip("/").partition("/")
        behavior = handler.unary_unary
        histogram = self._histogram

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await behavior(request, context)  # type: ignore[arg-type]
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                histogram.record(
                    (time.perf_counter() - start) * 1000,
                    {
                        "rpc.system": "grpc",
                        "rpc.service": service,
                        "rpc.method": method,
                        "rpc.grpc.status_code": code.value[0],
                    },
                )

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
