"""One trace from the caller through every phase into containerd; metrics for Prometheus; structured logs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc
from imageremoval.server.config import ServerConfig, parse_listen
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.providers import service_version, telemetry_from_env
from imageremoval.server.telemetry.scrape import serve_metrics

from .support.images import file_layer, manifest
from .support.server import ServerThread, health
from .support.store import Store
from .support.waiting import wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class MetadataRecorder(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Sees each containerd call's outgoing metadata after the tracing interceptor added its headers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        self.sent.append((method, {k: str(v) for k, v in (details.metadata or ())}))
        return await continuation(details, request)


@pytest.fixture(scope="module")
def observed(
    containerd: PrivateContainerd,
) -> Iterator[tuple[ServerThread, InMemorySpanExporter, Any, MetadataRecorder]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    recorder = MetadataRecorder()
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0"),
        containerd.address,
        tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        containerd_interceptors=[recorder],
    )
    yield thread, spans, reader, recorder
    thread.stop()


def _remove(port: int, image: str, namespace: str, **fields: Any) -> grpc.RpcError | pb.RemoveImageResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ImageRemovalServiceStub(channel)
        try:
            reply: pb.RemoveImageResponse = stub.RemoveImage(
                pb.RemoveImageRequest(image=image, namespace=namespace, **fields),
                metadata=(("traceparent", TRACEPARENT),),
                timeout=30,
            )
        except grpc.RpcError as error:
            return error
        return reply


def _ours(spans: InMemorySpanExporter, *, events: bool = False) -> list[ReadableSpan]:
    """This trace's finished spans, once the server span (and, when asked, the events span, which the
    publisher ends just after the reply) has ended."""

    def found() -> list[ReadableSpan]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.context is not None and format(s.context.trace_id, "032x") == TRACE_ID
        ]

    def ended(ours: list[ReadableSpan]) -> bool:
        return any(s.kind is SpanKind.SERVER for s in ours) and (
            not events or any(s.name == t.SPAN_EVENTS for s in ours)
        )

    wait_until(lambda: ended(found()), timeout=5)
    return found()


def test_the_callers_trace_continues_through_every_phase_into_containerd(
    observed: tuple[ServerThread, InMemorySpanExporter, Any, MetadataRecorder], store: Store, ns: str
) -> None:
    thread, spans, _, recorder = observed
    store.put(ns, ["docker.io/library/traced:latest"], manifest((file_layer("t", b"traced"),), note="traced"))
    spans.clear()
    recorder.sent.clear()
    assert isinstance(_remove(thread.port, "traced", ns), pb.RemoveImageResponse)
    ours = _ours(spans, events=True)
    server = [s for s in ours if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    root = server[0]
    assert root.parent is not None and format(root.parent.span_id, "016x") == PARENT_ID
    attributes = dict(root.attributes or {})
    # Current RPC semantic conventions, not the 1.11 names (rpc.system, net.peer.ip).
    assert root.name == "imageremoval.v1.ImageRemovalService/RemoveImage"
    assert attributes[t.RPC_SYSTEM_NAME] == "grpc"
    assert attributes[t.RPC_METHOD] == "imageremoval.v1.ImageRemovalService/RemoveImage"
    assert attributes[t.RPC_STATUS] == "OK"
    assert attributes[t.CLIENT_ADDRESS] == "127.0.0.1" and isinstance(attributes[t.CLIENT_PORT], int)
    assert attributes[t.TRANSPORT] == "tcp"
    assert not {"rpc.system", "rpc.service", "rpc.grpc.status_code", "net.peer.ip", "net.peer.port"} & set(attributes)
    assert attributes[t.ATTR_OUTCOME] == "success"
    phases = sorted((s for s in ours if s.name in t.PHASES), key=lambda s: s.start_time or 0)
    assert [s.name for s in phases] == [
        t.SPAN_RESOLVE,
        t.SPAN_WALK,
        t.SPAN_CHECK_CONFLICTS,
        t.SPAN_DELETE,
        t.SPAN_RELEASE_SNAPSHOTS,
        t.SPAN_EVENTS,
    ]
    assert all(
        s.parent is not None and root.context is not None and s.parent.span_id == root.context.span_id for s in phases
    )
    clients = [s for s in ours if s.kind is SpanKind.CLIENT]
    assert any(s.name == "containerd.services.images.v1.Images/Delete" for s in clients)
    # An absent blob (Content/Info NOT_FOUND after collection) is an answer, not a failed call: nothing is red.
    assert all(s.status.status_code is not StatusCode.ERROR for s in ours), [
        (s.name, s.status.description) for s in ours if s.status.status_code is StatusCode.ERROR
    ]
    assert any(dict(s.attributes or {}).get(t.RPC_STATUS) == "NOT_FOUND" for s in clients)
    # Each containerd call sits under a phase (or, for the bytes-reclaimed count after the call, the RPC).
    parents = {s.context.span_id for s in [*phases, root] if s.context is not None}
    assert all(s.parent is not None and s.parent.span_id in parents for s in clients)
    resolve_id = phases[0].context.span_id if phases[0].context else 0
    assert any(s.parent is not None and s.parent.span_id == resolve_id for s in clients)
    deletes = [md for method, md in recorder.sent if method.endswith("Images/Delete")]
    assert deletes and deletes[0]["traceparent"].split("-")[1] == TRACE_ID


def test_a_refused_removal_records_the_rule_that_refused_it(
    observed: tuple[ServerThread, InMemorySpanExporter, Any, MetadataRecorder], ns: str
) -> None:
    thread, spans, _, _ = observed
    spans.clear()
    error = _remove(thread.port, "not-here", ns)
    assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.NOT_FOUND
    ours = _ours(spans)
    root = next(s for s in ours if s.kind is SpanKind.SERVER)
    # RPC semantic conventions: NOT_FOUND is not a server error, so the server span's status stays unset; it
    # carries the code, and the refusal as an event with the reason. The phase that refused is an error.
    attributes = dict(root.attributes or {})
    assert attributes[t.RPC_STATUS] == "NOT_FOUND"
    assert t.ERROR_TYPE not in attributes and root.status.status_code is StatusCode.UNSET
    assert attributes[t.ATTR_REASON] == Reason.IMAGE_NOT_FOUND
    # One event with the reason and metadata; no traceback events of the abort.
    assert [e.name for e in root.events] == [t.EVENT_REFUSED]
    assert dict(root.events[0].attributes or {})[t.ATTR_REASON] == Reason.IMAGE_NOT_FOUND
    resolve = next(s for s in ours if s.name == t.SPAN_RESOLVE)
    assert resolve.status.status_code is StatusCode.ERROR
    assert resolve.status.description and "No such image" in resolve.status.description
    assert [e.name for s in ours for e in s.events if e.name == "exception"] == [], "traceback events"


def test_a_failed_removal_is_an_error_span(tmp_path: Path) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    thread = ServerThread(ServerConfig(listen="127.0.0.1:0"), str(tmp_path / "absent.sock"), provider)
    try:
        error = _remove(thread.port, "busybox", "default")
    finally:
        thread.stop()
    assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE
    root = next(s for s in _ours(spans) if s.kind is SpanKind.SERVER)
    assert root.status.status_code is StatusCode.ERROR
    assert dict(root.attributes or {})[t.ATTR_REASON] == Reason.CONTAINERD_UNAVAILABLE
    assert dict(root.attributes or {})[t.ERROR_TYPE] == "UNAVAILABLE"
    assert "exception" not in [e.name for e in root.events]


def test_health_checks_are_not_traced(
    observed: tuple[ServerThread, InMemorySpanExporter, Any, MetadataRecorder],
) -> None:
    thread, spans, _, recorder = observed
    spans.clear()
    with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    probes = _version_calls(recorder)
    wait_until(lambda: _version_calls(recorder) > probes, timeout=10)  # the probe runs every 2 s
    assert _version_calls(recorder) > probes, "the containerd probe ran"
    assert [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER] == []
    assert [s.name for s in spans.get_finished_spans() if s.name.endswith("Version/Version")] == []


def _version_calls(recorder: MetadataRecorder) -> int:
    return sum(1 for method, _ in recorder.sent if method.endswith("/containerd.services.version.v1.Version/Version"))


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_every_outcome_is_counted_with_action_and_reason(
    observed: tuple[ServerThread, InMemorySpanExporter, Any, MetadataRecorder], store: Store, ns: str
) -> None:
    thread, _, reader, _ = observed
    image = manifest((file_layer("m", b"metrics"),), note="metrics")
    store.put(ns, ["docker.io/library/m:1", "docker.io/library/m:2"], image)
    _remove(thread.port, "m:1", ns)
    _remove(thread.port, "m:2", ns)
    _remove(thread.port, "m:2", ns)
    durations = {
        (dict(p.attributes)["action"], dict(p.attributes)["outcome"]): p.count
        for p in _points(reader, t.METRIC_REMOVAL_DURATION)
    }
    assert durations[("untag", "success")] >= 1 and durations[("delete", "success")] >= 1
    assert durations[("delete", "not_found")] >= 1
    assert sum(p.value for p in _points(reader, t.METRIC_IMAGES_DELETED) if dict(p.attributes)["namespace"] == ns) == 1
    assert (
        sum(p.value for p in _points(reader, t.METRIC_REFERENCES_UNTAGGED) if dict(p.attributes)["namespace"] == ns)
        == 2
    )
    method = "imageremoval.v1.ImageRemovalService/RemoveImage"
    rpc = [p for p in _points(reader, t.METRIC_RPC_DURATION) if dict(p.attributes)[t.RPC_METHOD] == method]
    assert {dict(p.attributes)[t.RPC_STATUS] for p in rpc} >= {"OK", "NOT_FOUND"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int, path: str = "/metrics", accept: str = "text/plain") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), ""


def _families(body: str) -> dict[str, tuple[str, list[dict[str, str]]]]:
    """Family name -> (type, the label sets of its samples), from the text exposition format."""
    types: dict[str, str] = {}
    samples: dict[str, list[dict[str, str]]] = {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            samples.setdefault(name, [])
        elif line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest.rpartition("}")[0])) if rest else {}
            family = next(
                (f for f in (name, re.sub(r"_(bucket|sum|count|created)$", "", name)) if f in types), name.split(" ")[0]
            )
            samples.setdefault(family, []).append(labels)
    return {name: (types.get(name, ""), rows) for name, rows in samples.items()}


def _call_raw(port: int, payload: bytes) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"/{t_service()}/RemoveImage", None, None)
        try:
            call(payload, timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def t_service() -> str:
    return "imageremoval.v1.ImageRemovalService"


def _scraped_ready(body: str) -> bool:
    up = re.search(r"^imageremoval_containerd_up(\{[^}]*\})? 1(\.0)?$", body, re.MULTILINE)
    reclaimed = re.search(r"^imageremoval_reclaimed_bytes_total\{[^}]*\} [1-9]", body, re.MULTILINE)
    return bool(up and reclaimed)


@pytest.fixture
def scraped(containerd: PrivateContainerd, store: Store, ns: str) -> Iterator[tuple[int, str]]:
    """A server with the Prometheus endpoint after a removal, a refusal and a garbled request: (port, body)."""
    port = _free_port()
    telemetry = telemetry_from_env({}, metrics_listen=("127.0.0.1", port))
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0"),
        containerd.address,
        TracerProvider(),
        meter_provider=telemetry.meter_provider,
    )
    try:
        store.put(ns, ["docker.io/library/prom:latest"], manifest((file_layer("p", b"prom"),), note="prom"))
        assert isinstance(_remove(thread.port, "prom", ns), pb.RemoveImageResponse)
        _remove(thread.port, "prom", ns)
        two = store.put(ns, ["docker.io/library/p1:1", "docker.io/library/p2:1"], manifest((file_layer("q", b"q"),)))
        conflict = _remove(thread.port, two, ns)  # by ID, two repositories, no force: a conflict
        assert isinstance(conflict, grpc.RpcError) and conflict.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _call_raw(thread.port, b"\xff\xff\xff") == grpc.StatusCode.INVALID_ARGUMENT
        # Bytes reclaimed are counted just after the call, and containerd_up once the health probe has run:
        # scrape until both are there.
        wait_until(lambda: _scraped_ready(_scrape(port)[1]), timeout=30)
        status, body = _scrape(port)
        assert status == 200 and _scraped_ready(body), body
        yield port, body
    finally:
        thread.stop()
        telemetry.shutdown()


def test_the_scrape_matches_the_metric_list_in_telemetry(scraped: tuple[int, str]) -> None:
    _, body = scraped
    families = _families(body)
    for spec in (m for m in t.METRICS if m.exported == "always"):
        assert spec.prometheus in families, f"{spec.prometheus} missing from the scrape"
        kind, rows = families[spec.prometheus]
        assert kind == spec.kind, (spec.prometheus, kind)
        # Base units, spelled in the name (Prometheus's rule); counts carry no unit.
        assert (
            (f"_{spec.unit}" in spec.prometheus)
            if spec.unit
            else not spec.prometheus.endswith(("_milliseconds", "_ms"))
        )
        for labels in rows:
            own = {k for k in labels if not k.startswith("otel_scope_") and k not in {"le", "service_instance_id"}}
            if spec.prometheus == "target_info":
                assert set(spec.labels) <= own
                continue
            assert set(spec.labels) <= own <= set(spec.labels) | set(spec.optional), (spec.prometheus, own)
    assert not [m for m in t.METRICS if m.exported == "dup" and m.prometheus in families]
    assert "milliseconds" not in body
    assert not re.search(r'otel_scope_\w+=""', body), "empty scope labels"


def test_every_outcome_is_on_the_endpoint_guard_refusals_included(scraped: tuple[int, str]) -> None:
    _, body = scraped

    def value(family: str, **labels: str) -> float:
        found = [
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith((family + "{", family + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items())
        ]
        assert found, (family, labels)
        return sum(found)

    assert value("imageremoval_removals_total", outcome="success", reason="") == 1
    assert value("imageremoval_removals_total", outcome="not_found", reason=Reason.IMAGE_NOT_FOUND) == 1
    assert value("imageremoval_conflicts_total", conflict="MULTIPLE_REFERENCES", forceable="true") == 1
    assert value("imageremoval_requests_rejected_total", reason=Reason.MALFORMED_REQUEST) == 1
    method = f"{t_service()}/RemoveImage"
    for code in ("OK", "NOT_FOUND", "INVALID_ARGUMENT"):
        assert value("rpc_server_call_duration_seconds_count", rpc_method=method, rpc_response_status_code=code) == 1
    assert value("imageremoval_reclaimed_bytes_total") > 0
    assert value("imageremoval_build_info", version=service_version()) == 1
    assert value("target_info", service_version=service_version()) == 1
    assert value("imageremoval_containerd_up") == 1
    assert value("process_resident_memory_bytes") > 0


@pytest.mark.parametrize("listen", ["[::1]:0", "::1:0", "[::]:0", ":::0", "127.0.0.1:0"])
def test_the_metrics_endpoint_listens_on_ipv6_bracketed_or_not(listen: str) -> None:
    _, stop, port = serve_metrics(*parse_listen(listen))  # what --metrics-listen LISTEN starts
    try:
        host = "127.0.0.1" if listen.startswith("127.") else "[::1]"
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as reply:
            assert reply.status == 200 and b"process_cpu_seconds_total" in reply.read()
    finally:
        stop()


def test_the_metrics_port_answers_404_off_its_path(scraped: tuple[int, str]) -> None:
    port, _ = scraped
    assert _scrape(port, "/")[0] == 404
    assert _scrape(port, "/anything")[0] == 404
    assert _scrape(port, "/metrics/extra")[0] == 404
    status, body = _scrape(port, accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and "# UNIT rpc_server_call_duration_seconds seconds" in body


def test_the_stability_opt_in_dup_adds_the_deprecated_rpc_names(
    containerd: PrivateContainerd, monkeypatch: pytest.MonkeyPatch, ns: str
) -> None:
    monkeypatch.setenv(t.SEMCONV_OPT_IN, "http," + t.SEMCONV_DUP)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0"),
        containerd.address,
        provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    try:
        _remove(thread.port, "not-here", ns)
    finally:
        thread.stop()
    old = _points(reader, t.METRIC_OLD_RPC_DURATION)
    assert old and dict(old[0].attributes)[t.OLD_RPC_STATUS] == grpc.StatusCode.NOT_FOUND.value[0]
    assert _points(reader, t.METRIC_RPC_DURATION)
    root = next(s for s in _ours(spans) if s.kind is SpanKind.SERVER)
    attributes = dict(root.attributes or {})
    assert attributes[t.OLD_RPC_SYSTEM] == "grpc" and attributes[t.OLD_RPC_SERVICE] == t_service()
    assert attributes[t.OLD_RPC_STATUS] == 5 and attributes[t.RPC_STATUS] == "NOT_FOUND"


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.trace_ids: set[str] = set()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.names.append(span.name)
                    self.trace_ids.add(span.trace_id.hex())
        return trace_service_pb2.ExportTraceServiceResponse()


def test_otlp_delivers_spans_and_logs_carry_the_trace(
    containerd: PrivateContainerd, store: Store, ns: str, tmp_path: Path
) -> None:
    receiver = _Receiver()
    collector = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, collector)  # type: ignore[no-untyped-call]
    otlp_port = collector.add_insecure_port("127.0.0.1:0")
    collector.start()
    port = _free_port()
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        "OTEL_SERVICE_NAME": "imageremoval-test",
        "IMAGEREMOVAL_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "imageremoval-server"),
            "--listen",
            f"127.0.0.1:{port}",
            "--containerd-address",
            containerd.address,
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        store.put(ns, ["docker.io/library/otlp:latest"], manifest((file_layer("o", b"otlp"),), note="otlp"))
        wait_until(lambda: health(f"127.0.0.1:{port}", "") == health_pb2.HealthCheckResponse.SERVING, timeout=10)
        assert isinstance(_remove(port, "otlp", ns), pb.RemoveImageResponse)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        reader.join(5)
        collector.stop(0)
    assert TRACE_ID in receiver.trace_ids
    assert {t.SPAN_RESOLVE, t.SPAN_DELETE, t.SPAN_EVENTS} <= set(receiver.names)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    removal = [r for r in records if r.get("namespace") == ns]
    assert removal and removal[0]["trace_id"] == TRACE_ID
    assert removal[0]["outcome"] == "success" and removal[0]["reference"] == "otlp"
