"""Log lines fit for an audit trail: when (RFC 3339 UTC), who and from where, what was removed, every refusal."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc
from imageremoval.server.config import Limits, ServerConfig, TlsConfig
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.logs import CALLER, Caller, ContextFilter, JsonLines, TextLines
from imageremoval.server.telemetry.rpc import ServerTelemetry

from .support.images import file_layer, manifest
from .support.pki import Authority
from .support.server import ServerThread
from .support.store import Store

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SERVICE = "imageremoval.v1.ImageRemovalService"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The server's log lines as JSON and as text, through the formatters configure_logging installs."""
    json_out, text_out = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((json_out, JsonLines()), (text_out, TextLines())):
        handler = logging.StreamHandler(stream)
        handler.addFilter(ContextFilter())
        handler.setFormatter(formatter)
        handlers.append(handler)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.handlers.extend(handlers)
    yield json_out, text_out
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


def _records(stream: io.StringIO, namespace: str = "") -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [r for r in lines if not namespace or r.get("namespace") == namespace]


@pytest.fixture(scope="module")
def mtls(containerd: PrivateContainerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Any]]:
    """A mutual-TLS server and the CA that issued alice's client certificate."""
    folder: Path = tmp_path_factory.mktemp("logs-pki")
    ca = Authority()
    (folder / "ca.crt").write_bytes(ca.pem)
    cert, key = ca.issue("imageremoval", dns=("localhost",), ips=("127.0.0.1",)).write(folder, "server")
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0", tls=TlsConfig(cert, key, folder / "ca.crt")),
        containerd.address,
        TracerProvider(),
    )
    yield thread.port, ca
    thread.stop()


def _alice(port: int, ca: Authority) -> grpc.Channel:
    alice = ca.issue("alice", uris=("spiffe://test/alice",))
    credentials = grpc.ssl_channel_credentials(ca.pem, private_key=alice.key, certificate_chain=alice.cert)
    return grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )


def test_a_removal_line_says_who_asked_from_where_and_what_was_removed(
    mtls: tuple[int, Authority], captured: tuple[io.StringIO, io.StringIO], store: Store, ns: str
) -> None:
    port, ca = mtls
    image_id = store.put(ns, ["docker.io/library/au:1", "docker.io/library/au:2"], manifest((file_layer("a", b"au"),)))
    with _alice(port, ca) as channel:
        stub = pb_grpc.ImageRemovalServiceStub(channel)
        stub.RemoveImage(pb.RemoveImageRequest(image=image_id, namespace=ns, force=True), timeout=30)
    json_out, text_out = captured
    [line] = _records(json_out, ns)
    assert RFC3339_UTC.match(line["time"]), line["time"]
    assert line["outcome"] == "success" and line["image_id"] == image_id
    assert line["untagged"].split(",") == ["au:1", "au:2"] and line["deleted"] == image_id
    assert line[t.LOG_PEER].startswith("ipv4:127.0.0.1:")
    assert "uri:spiffe://test/alice" in line[t.LOG_IDENTITY].split(",")  # each identity says its kind
    assert line[t.LOG_RPC_METHOD] == f"{SERVICE}/RemoveImage"
    assert "reason" not in line, "no empty keys"
    [text] = [x for x in text_out.getvalue().splitlines() if f"namespace={ns}" in x]
    assert RFC3339_UTC.match(text.split(" ", 1)[0])
    assert f"deleted={image_id}" in text and "identity=" in text and "peer=ipv4:127.0.0.1:" in text
    assert not re.search(r'\w+=(\s|$|"")', text), f"empty key in {text!r}"


def test_every_refusal_has_its_line_guard_refusals_included(
    server: Any, captured: tuple[io.StringIO, io.StringIO], ns: str
) -> None:
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError):
            pb_grpc.ImageRemovalServiceStub(channel).RemoveImage(
                pb.RemoveImageRequest(image="absent", namespace=ns), timeout=30
            )
        with pytest.raises(grpc.RpcError) as garbled:
            channel.unary_unary(f"/{SERVICE}/RemoveImage", None, None)(b"\xff\xff\xff", timeout=10)
    assert garbled.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    json_out, _ = captured
    [refused] = _records(json_out, ns)
    assert refused["outcome"] == "not_found" and refused["reason"] == Reason.IMAGE_NOT_FOUND
    assert refused[t.LOG_PEER].startswith("ipv4:127.0.0.1:")
    guard = [r for r in _records(json_out) if r.get("reason") == Reason.MALFORMED_REQUEST]
    assert len(guard) == 1 and guard[0]["outcome"] == "invalid_argument"
    assert guard[0][t.LOG_RPC_METHOD] == f"{SERVICE}/RemoveImage" and guard[0][t.LOG_PEER].startswith("ipv4:")
    assert re.fullmatch(r"[0-9a-f]{32}", refused[t.LOG_TRACE_ID])  # this server traces


def test_a_zero_message_call_is_refused_with_its_caller_a_span_and_a_duration(
    containerd: PrivateContainerd, captured: tuple[io.StringIO, io.StringIO]
) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0"),
        containerd.address,
        tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel, pytest.raises(grpc.RpcError) as caught:
            channel.stream_unary(f"/{SERVICE}/RemoveImage", None, None)(iter(()), timeout=10)  # half-closed, empty
    finally:
        thread.stop()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [line] = [r for r in _records(captured[0]) if r.get("reason") == Reason.MALFORMED_REQUEST]
    assert line[t.LOG_PEER].startswith("ipv4:127.0.0.1:") and line[t.LOG_RPC_METHOD] == f"{SERVICE}/RemoveImage"
    assert re.fullmatch(r"[0-9a-f]{32}", line[t.LOG_TRACE_ID])
    [span] = [s for s in spans.get_finished_spans() if s.name == f"{SERVICE}/RemoveImage"]
    assert (span.attributes or {})[t.RPC_STATUS] == "INVALID_ARGUMENT"
    assert [e.name for e in span.events] == [t.EVENT_REFUSED]
    data = reader.get_metrics_data()
    assert data is not None
    durations = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == t.METRIC_RPC_DURATION
        for point in metric.data.data_points
    ]
    assert all(isinstance(p, HistogramDataPoint) for p in durations)
    assert [((p.attributes or {})[t.RPC_STATUS], getattr(p, "count", 0)) for p in durations] == [
        ("INVALID_ARGUMENT", 1)
    ]


def test_an_oversized_request_is_refused_logged_and_counted(
    containerd: PrivateContainerd, captured: tuple[io.StringIO, io.StringIO]
) -> None:
    reader = InMemoryMetricReader()
    limits = Limits(max_message_bytes=64 * 1024)
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0", limits=limits),
        containerd.address,
        TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    try:
        request = pb.RemoveImageRequest(image="x" * (128 * 1024), namespace="default").SerializeToString()
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel, pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(f"/{SERVICE}/RemoveImage", None, None)(request, timeout=10)
    finally:
        thread.stop()
    assert refused.value.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
    lines = [r for r in _records(captured[0]) if r.get("reason") == Reason.REQUEST_TOO_LARGE]
    assert len(lines) == 1 and lines[0][t.LOG_PEER].startswith("ipv4:127.0.0.1:")
    data = reader.get_metrics_data()
    assert data is not None
    counted: list[tuple[dict[str, Any], Any]] = [
        (dict(p.attributes or {}), getattr(p, "value", None))
        for r in data.resource_metrics
        for sm in r.scope_metrics
        for m in sm.metrics
        if m.name == t.METRIC_REJECTED
        for p in m.data.data_points
    ]
    assert counted == [({t.RPC_METHOD: f"{SERVICE}/RemoveImage", "reason": Reason.REQUEST_TOO_LARGE}, 1)]


def test_a_line_outside_any_trace_has_no_empty_trace_keys() -> None:
    record = logging.LogRecord("imageremoval.server.app", logging.INFO, __file__, 1, "serving", None, None)
    ContextFilter().filter(record)
    text = TextLines().format(record)
    assert text.endswith("imageremoval.server.app: serving"), text
    assert "trace_id" not in json.loads(JsonLines().format(record))


def test_text_lines_carry_every_field_json_lines_carry() -> None:
    # e.g. the daemon's "containerd is up" line: its address and root were dropped in text before.
    record = logging.LogRecord(
        "imageremoval.server.containerd.daemon", logging.INFO, __file__, 1, "containerd is up", None, None
    )
    record.address, record.root, record.namespace = "/run/c.sock", "/var/lib/c", "k8s.io"
    ContextFilter().filter(record)
    text = TextLines().format(record)
    shown = dict(part.split("=", 1) for part in text.split(": containerd is up", 1)[1].split())
    written = json.loads(JsonLines().format(record))
    assert shown == {k: str(v) for k, v in written.items() if k not in {"time", "level", "logger", "message"}}
    assert shown["address"] == "/run/c.sock" and shown["root"] == "/var/lib/c" and shown["namespace"] == "k8s.io"


@pytest.mark.skipif(
    "request_id" not in pb.RemoveImageRequest.DESCRIPTOR.fields_by_name, reason="the API has no request_id yet"
)
def test_the_request_id_is_on_the_line(server: Any, captured: tuple[io.StringIO, io.StringIO], ns: str) -> None:
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError):
        pb_grpc.ImageRemovalServiceStub(channel).RemoveImage(
            pb.RemoveImageRequest(image="absent", namespace=ns, request_id="req-7"),
            timeout=30,
        )
    [line] = _records(captured[0], ns)
    assert line[t.LOG_REQUEST_ID] == "req-7"


def test_the_request_id_is_read_from_any_request_that_has_one() -> None:
    class Context:
        def peer(self) -> str:
            return "ipv4:10.0.0.9:4000"

        def auth_context(self) -> dict[str, list[bytes]]:
            return {"x509_common_name": [b"alice"]}

    def enter(request: object) -> Caller | None:
        ServerTelemetry(None, None)._enter(request, Context(), f"{SERVICE}/RemoveImage")  # type: ignore[arg-type]
        return CALLER.get()

    caller = contextvars.copy_context().run(enter, SimpleNamespace(request_id="req-9"))
    assert caller == Caller(f"{SERVICE}/RemoveImage", "ipv4:10.0.0.9:4000", ("cn:alice",), "req-9")
    assert contextvars.copy_context().run(enter, pb.RemoveImageRequest()).request_id == ""  # type: ignore[union-attr]
