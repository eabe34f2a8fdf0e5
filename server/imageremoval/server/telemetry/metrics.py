"""Removal metrics, refused requests, build info and containerd's reachability: every outcome counted."""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterable

import grpc
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from imageremoval.server.domain.errors import ImageConflict, RemovalError
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.providers import service_version
from imageremoval.server.transport.error_status import code_of

_guard_log = logging.getLogger("imageremoval.server.transport.input_guard")  # the guard refused: log it under its name


def outcome_of(error: RemovalError) -> str:
    """The outcome label of a refusal: its gRPC code's name in lower case (e.g. `failed_precondition`)."""
    return code_of(error.reason).name.lower()


def meter(provider: MeterProvider) -> Meter:
    """Our meter, with version and schema: no empty otel_scope_* labels on the Prometheus endpoint."""
    return provider.get_meter(t.METER_NAME, service_version(), schema_url=t.SCHEMA_URL)


class RemovalMetrics:
    """The instruments the removal records into; built once from the meter provider passed in."""

    def __init__(self, provider: MeterProvider) -> None:
        meter_ = meter(provider)
        self._duration = meter_.create_histogram(
            t.METRIC_REMOVAL_DURATION,
            unit="s",
            description="Duration of image removals by action and outcome",
        )
        self._removals = meter_.create_counter(
            t.METRIC_REMOVALS,
            unit="{removal}",
            description="Removal calls by action, outcome and error reason",
        )
        self._deleted = meter_.create_counter(
            t.METRIC_IMAGES_DELETED, unit="{image}", description="Images (and platform manifests) deleted"
        )
        self._untagged = meter_.create_counter(
            t.METRIC_REFERENCES_UNTAGGED, unit="{reference}", description="Image references (names) removed"
        )
        self._reclaimed = meter_.create_counter(
            t.METRIC_BYTES_RECLAIMED, unit="By", description="Bytes of content freed by garbage collection"
        )
        self._conflicts = meter_.create_counter(
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
            outcome, reason = outcome_of(error), error.reason.value
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


class RequestRejections:
    """Requests the guard refused before any service saw them: a log line, a count and a span event each."""

    def __init__(self, provider: MeterProvider | None) -> None:
        self._counter = (
            meter(provider).create_counter(
                t.METRIC_REJECTED, unit="{request}", description="Requests refused as malformed or too large"
            )
            if provider is not None
            else None
        )

    def __call__(self, method: str, error: RemovalError) -> None:
        method = method.lstrip("/")
        span = trace.get_current_span()
        if span.is_recording():
            metadata = {f"imageremoval.error.{k}": v for k, v in error.metadata.items()}
            span.add_event(t.EVENT_REFUSED, {t.ATTR_REASON: error.reason.value, **metadata})
            span.set_attribute(t.ATTR_REASON, error.reason.value)
        if self._counter is not None:
            self._counter.add(1, {t.RPC_METHOD: method, t.ATTR_METRIC_REASON: error.reason.value})
        _guard_log.info(
            "request refused: %s",
            error.message,
            extra={"outcome": outcome_of(error), "reason": error.reason.value, t.LOG_RPC_METHOD: method},
        )


class ServiceGauges:
    """imageremoval.build.info (always 1, labels name the build) and imageremoval.containerd.up."""

    def __init__(self, provider: MeterProvider) -> None:
        self.containerd_up: bool | None = None
        meter_ = meter(provider)
        labels = {
            t.ATTR_METRIC_VERSION: service_version(),
            "python": platform.python_version(),
            "grpc": grpc.__version__,
        }
        meter_.create_observable_gauge(
            t.METRIC_BUILD_INFO,
            callbacks=[lambda _options: [Observation(1, labels)]],
            description="Which build runs: version, Python and gRPC",
        )
        meter_.create_observable_gauge(
            t.METRIC_CONTAINERD_UP,
            callbacks=[self._up],
            description="1 while containerd answers the health probe, else 0",
        )

    def _up(self, _options: CallbackOptions) -> Iterable[Observation]:
        if self.containerd_up is None:
            return []
        return [Observation(1 if self.containerd_up else 0)]
