"""Tracer and meter providers built from the standard OTEL_* variables, passed in rather than set globally."""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

from imageremoval.server.telemetry import names as t

_log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "imageremoval"
# Removal latencies span a metadata transaction (milliseconds) to a large garbage collection (seconds).
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MILLISECONDS_BUCKETS = tuple(b * 1000 for b in SECONDS_BUCKETS)


def service_version() -> str:
    """The installed distribution's version (service.version, build info, meter version)."""
    try:
        return importlib.metadata.version("imageremoval")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class TelemetryConfigError(ValueError):
    """An OTEL_* variable names an exporter or protocol we do not know."""


@dataclass
class Telemetry:
    """The providers the server uses, and what must be flushed and stopped on shutdown.

    A signal nothing exports gets the API's no-op provider: no span or measurement is built just to be
    dropped, and the server then installs no tracing interceptors at all (measured: a third of its CPU).
    """

    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    _closers: list[Any] = field(default_factory=list)

    def shutdown(self) -> None:
        """Flush spans and metrics (batch processors, periodic readers), then stop the metrics endpoint."""
        if isinstance(self.tracer_provider, TracerProvider):
            self.tracer_provider.force_flush()
            self.tracer_provider.shutdown()
        if isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.shutdown()
        for closer in self._closers:
            closer()


def _exporters(environ: Mapping[str, str], name: str) -> list[str]:
    value = environ.get(name, "none").strip().lower() or "none"
    return [part.strip() for part in value.split(",") if part.strip() and part.strip() != "none"]


def _protocol(environ: Mapping[str, str], signal: str) -> str:
    protocol = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol not in {"grpc", "http/protobuf"}:
        raise TelemetryConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r}")
    return protocol


def one_line(span: ReadableSpan) -> str:
    """A span as one readable line: trace, span <- parent, name, duration, status and our attributes."""
    context, parent = span.context, span.parent
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    attributes = " ".join(
        f"{k.removeprefix('imageremoval.')}={v!s}"
        for k, v in (span.attributes or {}).items()
        if k.startswith(("imageremoval.", t.RPC_STATUS, t.ERROR_TYPE))
    )
    return (
        f"trace={context.trace_id:032x} span={context.span_id:016x} "
        f"parent={parent.span_id if parent else 0:016x} {span.name} {duration:.2f}ms "
        f"{span.status.status_code.name} {attributes}".rstrip()
        + "\n"
        if context is not None
        else f"{span.name}\n"
    )


def _span_exporter(kind: str, environ: Mapping[str, str]) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter(
            service_name=environ.get("OTEL_SERVICE_NAME", DEFAULT_SERVICE_NAME), formatter=one_line
        )
    if kind == "otlp":
        if _protocol(environ, "TRACES") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        return HttpSpanExporter()
    raise TelemetryConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {kind!r} (otlp, console or none)")


def _metric_reader(kind: str, environ: Mapping[str, str]) -> MetricReader:
    if kind == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if kind == "otlp":
        if _protocol(environ, "METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            return PeriodicExportingMetricReader(OTLPMetricExporter())
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        return PeriodicExportingMetricReader(HttpMetricExporter())
    if kind == "prometheus":
        raise TelemetryConfigError("OTEL_METRICS_EXPORTER: use --metrics-listen for the Prometheus endpoint")
    raise TelemetryConfigError(f"OTEL_METRICS_EXPORTER: unknown exporter {kind!r} (otlp, console or none)")


def views() -> list[View]:
    """Bucket boundaries that fit removal latencies (the SDK defaults are for milliseconds)."""
    return [
        View(
            instrument_name=t.METRIC_REMOVAL_DURATION,
            aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS),
        ),
        View(
            instrument_name=t.METRIC_RPC_DURATION,
            aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS),
        ),
        View(
            instrument_name=t.METRIC_OLD_RPC_DURATION,
            aggregation=ExplicitBucketHistogramAggregation(MILLISECONDS_BUCKETS),
        ),
    ]


def telemetry_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    metrics_listen: tuple[str, int] | None = None,
    extra_readers: list[MetricReader] | None = None,
) -> Telemetry:
    """Providers for OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER (default none: quiet without a collector)."""
    env = os.environ if environ is None else environ
    attributes: dict[str, str] = {}
    if not env.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    if f"{SERVICE_VERSION}=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes[SERVICE_VERSION] = service_version()
    resource = Resource.create(attributes)  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read here
    span_exporters = _exporters(env, "OTEL_TRACES_EXPORTER")
    tracer_provider: trace.TracerProvider = (
        TracerProvider(resource=resource) if span_exporters else trace.NoOpTracerProvider()
    )
    for kind in span_exporters:
        exporter = _span_exporter(kind, env)
        # Console output is for people watching: print each span as it ends rather than in batches.
        processor = SimpleSpanProcessor(exporter) if kind == "console" else BatchSpanProcessor(exporter)
        assert isinstance(tracer_provider, TracerProvider)
        tracer_provider.add_span_processor(processor)
    readers: list[MetricReader] = [_metric_reader(kind, env) for kind in _exporters(env, "OTEL_METRICS_EXPORTER")]
    readers.extend(extra_readers or [])
    closers: list[Any] = []
    if metrics_listen is not None:
        from imageremoval.server.telemetry.scrape import serve_metrics

        reader, stop, bound = serve_metrics(*metrics_listen)
        readers.append(reader)
        closers.append(stop)
        host = metrics_listen[0]
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
        _log.info("serving Prometheus metrics on http://%s:%d/metrics", shown, bound)
    meter_provider: metrics.MeterProvider = (
        MeterProvider(resource=resource, metric_readers=readers, views=views())
        if readers
        else metrics.NoOpMeterProvider()
    )
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider, _closers=closers)
