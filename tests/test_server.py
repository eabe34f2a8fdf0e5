"""The server as a mesh sees it: health, reflection, status codes with ErrorInfo, spans, shutdown."""

from __future__ import annotations

import logging
import threading

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from opentelemetry.sdk.trace import TracerProvider

from imageremoval.client import ImageRemovalClient, ImageRemovalError
from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc
from imageremoval.server.config import ConfigError, ServerConfig, load_config
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason
from imageremoval.server.telemetry import names as telemetry

from .support.images import file_layer, manifest
from .support.server import SERVICE, Server, ServerThread, health
from .support.status import error_info, status_of
from .support.store import Store
from .support.waiting import wait_until


def test_health_is_serving_for_the_server_and_the_service(server: Server) -> None:
    assert wait_until(lambda: health(server.target) == health_pb2.HealthCheckResponse.SERVING)
    assert health(server.target, "") == health_pb2.HealthCheckResponse.SERVING


def test_health_follows_containerd_from_absent_to_answering(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("late-containerd")
    daemon = PrivateContainerd(base)
    thread = ServerThread(ServerConfig(listen="127.0.0.1:0"), daemon.address, TracerProvider())
    target = f"127.0.0.1:{thread.port}"
    try:
        assert health(target) == health_pb2.HealthCheckResponse.NOT_SERVING
        with ImageRemovalClient(target) as client, pytest.raises(ImageRemovalError) as caught:
            client.remove("busybox")
        assert (caught.value.code, caught.value.reason) == ("UNAVAILABLE", Reason.CONTAINERD_UNAVAILABLE)
        daemon.start()
        assert wait_until(lambda: health(target) == health_pb2.HealthCheckResponse.SERVING)
    finally:
        thread.stop()
        daemon.stop()


def test_health_turns_not_serving_as_shutdown_begins(containerd: PrivateContainerd) -> None:
    thread = ServerThread(ServerConfig(listen="127.0.0.1:0"), containerd.address, TracerProvider())
    target = f"127.0.0.1:{thread.port}"
    assert wait_until(lambda: health(target) == health_pb2.HealthCheckResponse.SERVING)
    seen: list[int] = []
    channel = grpc.insecure_channel(target)
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))

    def read() -> None:
        try:
            for reply in watch:
                seen.append(int(reply.status))
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert wait_until(lambda: seen[-1:] == [health_pb2.HealthCheckResponse.SERVING])
    thread.stop(grace=2)
    reader.join(10)
    channel.close()
    assert seen[-1] == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_and_describes_the_service(server: Server) -> None:
    with grpc.insecure_channel(server.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert SERVICE in database.get_services()
        assert "grpc.health.v1.Health" in database.get_services()
        from google.protobuf.descriptor_pool import DescriptorPool

        pool = DescriptorPool(database)
        method = pool.FindServiceByName(SERVICE).methods_by_name["RemoveImage"]
        assert method.input_type.full_name == "imageremoval.v1.RemoveImageRequest"
        assert [f.name for f in method.input_type.fields][:4] == ["image", "namespace", "force", "no_prune"]


def _raw_error(target: str, request: pb.RemoveImageRequest) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo]:
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.ImageRemovalServiceStub(channel).RemoveImage(request, timeout=10)
    return caught.value.code(), error_info(caught.value)  # from_call checks the Status's code is the call's


@pytest.mark.parametrize(
    ("request_fields", "code", "reason"),
    [
        ({"image": ""}, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_REFERENCE),
        ({"image": "UPPER"}, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_REFERENCE),
        ({"image": "x" * 1_000_000}, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_REFERENCE),
        ({"image": "\u00e9\u00e8"}, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_REFERENCE),
        (
            {"image": "ok", "namespace": "bad namespace!"},
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_NAMESPACE,
        ),
        ({"image": "ok", "namespace": "n" * 100_000}, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_NAMESPACE),
        # refused before anything is read (containerd would not even take it as a header)
        ({"image": "ok", "namespace": "\u00fc"}, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_NAMESPACE),
        ({"image": "no-such-image-here"}, grpc.StatusCode.NOT_FOUND, Reason.IMAGE_NOT_FOUND),
    ],
)
def test_every_failure_is_a_status_with_error_info(
    server: Server, request_fields: dict[str, str], code: grpc.StatusCode, reason: str
) -> None:
    got_code, info = _raw_error(server.target, pb.RemoveImageRequest(**request_fields))  # type: ignore[arg-type]
    assert (got_code, info.reason, info.domain) == (code, reason, "imageremoval.v1")


def test_ambiguous_short_id_is_refused(client: ImageRemovalClient, store: Store, ns: str) -> None:
    seen: dict[str, object] = {}
    pair = None
    for n in range(5000):
        m = manifest((file_layer("f", b"ambiguous"),), note=f"n{n}")
        prefix = m.blob.digest[7:11]
        if prefix in seen:
            pair = (seen[prefix], m)
            break
        seen[prefix] = m
    assert pair is not None
    store.put(ns, ["docker.io/library/first:latest"], pair[0])  # type: ignore[arg-type]
    store.put(ns, ["docker.io/library/second:latest"], pair[1])
    with pytest.raises(ImageRemovalError) as caught:
        client.remove(pair[1].blob.digest[7:11], namespace=ns)
    assert (caught.value.code, caught.value.reason) == ("INVALID_ARGUMENT", Reason.AMBIGUOUS_REFERENCE)
    assert store.names(ns) == {"docker.io/library/first:latest", "docker.io/library/second:latest"}


def test_each_phase_is_a_span_in_order(server: Server, client: ImageRemovalClient, store: Store, ns: str) -> None:
    image_id = store.put(ns, ["docker.io/library/traced:latest"], manifest((file_layer("t", b"t"),), note="t"))
    server.spans.clear()
    client.remove("traced", namespace=ns)
    # The events span ends just after the reply (events are published from a queue): wait for it.
    assert wait_until(lambda: any(s.name == telemetry.SPAN_EVENTS for s in server.spans.get_finished_spans()))
    spans = [s for s in server.spans.get_finished_spans() if (s.attributes or {}).get(telemetry.ATTR_NAMESPACE) == ns]
    assert [s.name for s in spans] == [
        telemetry.SPAN_RESOLVE,
        telemetry.SPAN_WALK,
        telemetry.SPAN_CHECK_CONFLICTS,
        telemetry.SPAN_DELETE,
        telemetry.SPAN_RELEASE_SNAPSHOTS,
        telemetry.SPAN_EVENTS,
    ]
    resolve, walk, events = (dict(s.attributes or {}) for s in (spans[0], spans[1], spans[-1]))
    assert resolve[telemetry.ATTR_IMAGE_ID] == image_id
    assert resolve[telemetry.ATTR_REFERENCES] == 1
    assert walk[telemetry.ATTR_BLOBS_WALKED] == 3
    assert events[telemetry.ATTR_EVENTS] == 2


def test_configuration_is_validated_at_start() -> None:
    assert load_config([], {}).listen == "127.0.0.1:50051"
    assert load_config([], {"IMAGEREMOVAL_NAMESPACE": "k8s.io"}).namespace == "k8s.io"
    assert load_config(["--namespace", "flag"], {"IMAGEREMOVAL_NAMESPACE": "env"}).namespace == "flag"
    for argv in (
        ["--listen", "nohost"],
        ["--namespace", "bad ns"],
        ["--containerd-address", "relative.sock"],
        ["--grace-period", "-1"],
        ["--log-level", "LOUD"],
    ):
        with pytest.raises(ConfigError):
            load_config(argv, {})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xff\xff\xff", Reason.MALFORMED_REQUEST),
        (b"\x0a\x05ab", Reason.MALFORMED_REQUEST),  # field 1 claims 5 bytes, 2 follow
        # Over our 1 MiB but under gRPC's 2 MiB: our own refusal, with ErrorInfo (beyond it, RESOURCE_EXHAUSTED).
        (pb.RemoveImageRequest(image="x" * 1_500_000).SerializeToString(), Reason.REQUEST_TOO_LARGE),
    ],
)
def test_garbled_or_oversized_requests_are_invalid_argument(server: Server, payload: bytes, reason: str) -> None:
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]) as channel:
        call = channel.unary_unary(f"/{SERVICE}/RemoveImage", None, None)  # raw bytes both ways
        with pytest.raises(grpc.RpcError) as caught:
            call(payload, timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == reason


def test_a_conflict_carries_precondition_failure_and_resource_info(server: Server, store: Store, ns: str) -> None:
    image_id = store.put(
        ns,
        ["docker.io/library/p1:latest", "docker.io/library/p2:latest"],
        manifest((file_layer("p", b"pf"),), note="pf"),
    )
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.ImageRemovalServiceStub(channel).RemoveImage(pb.RemoveImageRequest(image=image_id, namespace=ns))
    status = status_of(caught.value)
    failure, resource = error_details_pb2.PreconditionFailure(), error_details_pb2.ResourceInfo()
    assert status.details[1].Unpack(failure) and status.details[2].Unpack(resource)
    assert [(v.type, v.subject) for v in failure.violations] == [("MULTIPLE_REFERENCES", f"image/{image_id}")]
    assert (resource.resource_type, resource.resource_name) == ("containerd.image", image_id)


def test_huge_bad_input_is_logged_in_bounded_size(server: Server, caplog: pytest.LogCaptureFixture, ns: str) -> None:
    caplog.set_level(logging.INFO, logger="imageremoval")
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError):
        pb_grpc.ImageRemovalServiceStub(channel).RemoveImage(pb.RemoveImageRequest(image="Y" * 900_000, namespace=ns))
    refusals = [r for r in caplog.records if r.getMessage().startswith("removal refused")]
    assert refusals
    assert all(len(r.getMessage()) < 1024 and len(str(getattr(r, "reference", ""))) <= 256 for r in refusals)
