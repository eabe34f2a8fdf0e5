"""Production serving: TLS and mTLS, unix sockets, who may touch what, load, deadlines, drain, recovery."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imageremoval.client import ImageRemovalClient, ImageRemovalError
from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc
from imageremoval.server.app import server_options
from imageremoval.server.config import ConfigError, Limits, ServerConfig, TlsConfig, load_config
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason

from .support.images import file_layer, manifest
from .support.interceptors import SlowDeletes
from .support.pki import Authority
from .support.server import health, serve
from .support.store import Store
from .support.waiting import wait_until


def _remove(channel: grpc.Channel, image: str, namespace: str, timeout: float = 30, **fields: Any) -> Any:
    stub = pb_grpc.ImageRemovalServiceStub(channel)
    return stub.RemoveImage(pb.RemoveImageRequest(image=image, namespace=namespace, **fields), timeout=timeout)


def _refused(channel: grpc.Channel, namespace: str) -> bool:
    """Whether a new call is refused as UNAVAILABLE (any other answer: it was still served)."""
    try:
        _remove(channel, "anything", namespace, timeout=5)
    except grpc.RpcError as error:
        return bool(error.code() == grpc.StatusCode.UNAVAILABLE)
    return False


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority()
    (folder / "ca.crt").write_bytes(ca.pem)
    server_cert, server_key = ca.issue("imageremoval", dns=("localhost",), ips=("127.0.0.1",)).write(folder, "server")
    alice = ca.issue("alice", uris=("spiffe://test/alice",))
    stranger = Authority("another CA").issue("mallory", uris=("spiffe://test/alice",))
    return {"folder": folder, "ca": ca, "server": (server_cert, server_key), "alice": alice, "stranger": stranger}


def _tls_channel(port: int, ca_pem: bytes, client: Any = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )


def test_tls_serves_encrypted_and_refuses_plaintext(containerd: PrivateContainerd, pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0", tls=TlsConfig(cert, key)))
    try:
        with _tls_channel(thread.port, pki["ca"].pem) as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as plain, pytest.raises(grpc.RpcError) as caught:
            health(plain)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        thread.stop()


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    containerd: PrivateContainerd, pki: dict[str, Any]
) -> None:
    cert, key = pki["server"]
    config = ServerConfig(listen="127.0.0.1:0", tls=TlsConfig(cert, key, pki["folder"] / "ca.crt"))
    thread = serve(containerd.address, config)
    try:
        with _tls_channel(thread.port, pki["ca"].pem, pki["alice"]) as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
        for client in (None, pki["stranger"]):
            with _tls_channel(thread.port, pki["ca"].pem, client) as channel, pytest.raises(grpc.RpcError) as caught:
                health(channel)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        thread.stop()


def test_a_client_identity_may_touch_only_its_namespaces(
    containerd: PrivateContainerd, pki: dict[str, Any], store: Store, ns: str
) -> None:
    cert, key = pki["server"]
    config = ServerConfig(
        listen="127.0.0.1:0",
        tls=TlsConfig(cert, key, pki["folder"] / "ca.crt"),
        identity_namespaces={"spiffe://test/alice": frozenset({ns})},
    )
    image_id = store.put(ns, ["docker.io/library/mine:latest"], manifest((file_layer("m", b"mine"),), note="mine"))
    store.put("default", ["docker.io/library/theirs:latest"], manifest((file_layer("t", b"theirs"),), note="t"))
    thread = serve(containerd.address, config)
    try:
        with _tls_channel(thread.port, pki["ca"].pem, pki["alice"]) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                _remove(channel, "theirs", "default")
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "spiffe://test/alice" in (caught.value.details() or "")
            reply = _remove(channel, "mine", ns)
        assert [item.deleted for item in reply.items if item.deleted] == [image_id]
        assert "docker.io/library/theirs:latest" in store.names("default")
    finally:
        thread.stop()
        store.delete_record("default", "docker.io/library/theirs:latest")


def test_certificates_are_reloaded_when_their_files_change(containerd: PrivateContainerd, tmp_path: Path) -> None:
    old_ca, new_ca = Authority("old CA"), Authority("new CA")
    cert, key = old_ca.issue("imageremoval", ips=("127.0.0.1",), dns=("localhost",)).write(tmp_path, "server")
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0", tls=TlsConfig(cert, key)))
    try:
        with _tls_channel(thread.port, old_ca.pem) as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
        rotated = new_ca.issue("imageremoval", ips=("127.0.0.1",), dns=("localhost",))
        key.write_bytes(rotated.key)
        cert.write_bytes(rotated.cert)
        with _tls_channel(thread.port, new_ca.pem) as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        thread.stop()


def test_unix_socket_is_owner_and_group_only(
    containerd: PrivateContainerd, store: Store, ns: str, tmp_path: Path
) -> None:
    socket_path = tmp_path / "run" / "imageremoval.sock"
    config = ServerConfig(listen=f"unix://{socket_path}")
    image_id = store.put(ns, ["docker.io/library/unix:latest"], manifest((file_layer("u", b"unix"),), note="unix"))
    thread = serve(containerd.address, config)
    try:
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o660
        with ImageRemovalClient(f"unix://{socket_path}") as client:
            assert client.remove("unix", namespace=ns)[-1].value == image_id
    finally:
        thread.stop()


def test_plaintext_beyond_loopback_must_be_asked_for() -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        load_config(["--listen", "0.0.0.0:50051"], {})
    assert load_config(["--listen", "0.0.0.0:50051", "--insecure"], {}).insecure
    assert load_config([], {"IMAGEREMOVAL_LISTEN": "[::]:50051", "IMAGEREMOVAL_INSECURE": "true"}).insecure
    assert load_config(["--listen", "127.0.0.1:50051,unix:///run/imageremoval.sock"], {}).extra_listen == (
        "unix:///run/imageremoval.sock",
    )


def test_namespaces_outside_the_allow_list_are_permission_denied(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    store.put(ns, ["docker.io/library/a:latest"], manifest((file_layer("a", b"a"),), note="allow"))
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0", allowed_namespaces=frozenset({"k8s.io"})))
    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client, pytest.raises(ImageRemovalError) as caught:
            client.remove("a", namespace=ns)
        assert (caught.value.code, caught.value.reason) == ("PERMISSION_DENIED", Reason.NAMESPACE_NOT_ALLOWED)
        assert store.names(ns) == {"docker.io/library/a:latest"}
    finally:
        thread.stop()


def test_pinned_and_protected_images_are_refused_even_with_force(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    store.put(
        ns,
        ["docker.io/library/pinned:latest"],
        manifest((file_layer("p", b"p"),), note="pinned"),
        labels={"io.cri-containerd.pinned": "pinned"},
    )
    store.put(ns, ["registry.k8s.io/pause:3.9"], manifest((file_layer("s", b"s"),), note="pause"))
    strict = serve(containerd.address, ServerConfig(listen="127.0.0.1:0"))
    lenient = serve(containerd.address, ServerConfig(listen="127.0.0.1:0", allow_force_protected=True))
    try:
        with ImageRemovalClient(f"127.0.0.1:{strict.port}") as client:
            for image in ("pinned", "registry.k8s.io/pause:3.9"):
                with pytest.raises(ImageRemovalError) as caught:
                    client.remove(image, namespace=ns, force=True)
                assert (caught.value.code, caught.value.reason) == ("FAILED_PRECONDITION", Reason.IMAGE_PROTECTED)
        assert len(store.names(ns)) == 2
        with ImageRemovalClient(f"127.0.0.1:{lenient.port}") as client:
            with pytest.raises(ImageRemovalError):
                client.remove("pinned", namespace=ns)
            client.remove("pinned", namespace=ns, force=True)
            client.remove("registry.k8s.io/pause:3.9", namespace=ns, force=True)
        assert store.names(ns) == set()
    finally:
        strict.stop()
        lenient.stop()


def test_removals_beyond_the_limit_are_resource_exhausted(containerd: PrivateContainerd, store: Store, ns: str) -> None:
    slow = SlowDeletes(1.0)
    config = ServerConfig(listen="127.0.0.1:0", limits=replace(Limits(), max_concurrent_removals=1))
    store.put(ns, ["docker.io/library/one:latest"], manifest((file_layer("1", b"1"),), note="one"))
    store.put(ns, ["docker.io/library/two:latest"], manifest((file_layer("2", b"2"),), note="two"))
    thread = serve(containerd.address, config, containerd_interceptors=[slow])
    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client:
            first = threading.Thread(target=client.remove, args=("one",), kwargs={"namespace": ns})
            first.start()
            assert slow.started.wait(10)
            with pytest.raises(ImageRemovalError) as caught:
                client.remove("two", namespace=ns)
            first.join(10)
            assert (caught.value.code, caught.value.reason) == ("RESOURCE_EXHAUSTED", Reason.TOO_MANY_REMOVALS)
            client.remove("two", namespace=ns)
        assert store.names(ns) == set()
    finally:
        thread.stop()


def test_a_request_with_too_little_time_left_changes_nothing(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    config = ServerConfig(listen="127.0.0.1:0", limits=replace(Limits(), min_deadline_s=5.0))
    store.put(ns, ["docker.io/library/hurry:latest"], manifest((file_layer("h", b"h"),), note="hurry"))
    thread = serve(containerd.address, config)
    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client, pytest.raises(ImageRemovalError) as caught:
            client.remove("hurry", namespace=ns, timeout=2)
        assert (caught.value.code, caught.value.reason) == ("DEADLINE_EXCEEDED", Reason.DEADLINE_EXCEEDED)
        assert store.names(ns) == {"docker.io/library/hurry:latest"}
    finally:
        thread.stop()


def test_a_short_deadline_never_leaves_a_half_done_removal(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    slow = SlowDeletes(0.3)
    image = manifest((file_layer("d", b"deadline"),), note="deadline")
    names = ["docker.io/library/d:1", "docker.io/library/d:2", "docker.io/library/e:1"]
    image_id = store.put(ns, names, image)
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0"), containerd_interceptors=[slow])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel, pytest.raises(grpc.RpcError) as caught:
            _remove(channel, image_id, ns, timeout=0.4, force=True)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # A mutation that started before the deadline passed runs to its end: all names and the content go.
        # On a loaded machine the deadline can pass before the first delete; then nothing at all may change.
        if wait_until(lambda: store.names(ns) == set(), timeout=10):
            assert wait_until(lambda: not store.has(ns, image.blob.digest), timeout=10)
        else:
            assert store.names(ns) == set(names)
            assert store.has(ns, image.blob.digest)
    finally:
        thread.stop()


def test_shutdown_flips_health_first_then_refuses_new_calls_while_in_flight_removals_finish(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    slow = SlowDeletes(1.5)
    image_id = store.put(ns, ["docker.io/library/slow:latest"], manifest((file_layer("s", b"slow"),), note="slow"))
    config = ServerConfig(listen="127.0.0.1:0", drain_seconds=0.5)
    thread = serve(containerd.address, config, containerd_interceptors=[slow])
    target = f"127.0.0.1:{thread.port}"
    outcome: list[Any] = []
    with grpc.insecure_channel(target) as channel:
        assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
        in_flight = threading.Thread(target=lambda: outcome.append(_remove(channel, "slow", ns)))
        in_flight.start()
        assert slow.started.wait(10)
        stopping = threading.Thread(target=thread.stop, kwargs={"grace": 10})
        stopping.start()
        assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=2)
        # Served during the drain delay (NOT_FOUND), then refused (UNAVAILABLE) once it is over.
        assert wait_until(lambda: _refused(channel, ns), timeout=10)
        in_flight.join(15)
        stopping.join(15)
    assert outcome and [i.deleted for i in outcome[0].items if i.deleted] == [image_id]
    assert store.names(ns) == set()


@pytest.fixture
def own_containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateContainerd]:
    daemon = PrivateContainerd(tmp_path_factory.mktemp("restartable"))
    daemon.start()
    yield daemon
    daemon.stop()


def test_containerd_restart_is_survived_without_restarting_the_server(own_containerd: PrivateContainerd) -> None:
    thread = serve(own_containerd.address, ServerConfig(listen="127.0.0.1:0"))
    store = Store(own_containerd.address)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
            own_containerd.stop()
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(grpc.RpcError) as caught:
                _remove(channel, "busybox", "default")
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            own_containerd.start()
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
            image_id = store.put("default", ["docker.io/library/back:latest"], manifest((file_layer("b", b"b"),)))
            reply = _remove(channel, "back", "default")
            assert [i.deleted for i in reply.items if i.deleted] == [image_id]
    finally:
        store.close()
        thread.stop()


def test_a_removal_past_its_deadline_still_publishes_its_events_and_holds_its_slot(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    slow = SlowDeletes(1.0)
    image_id = store.put(ns, ["docker.io/library/ev:latest"], manifest((file_layer("e", b"events"),), note="events"))
    store.put(ns, ["docker.io/library/next:latest"], manifest((file_layer("n", b"next"),), note="next"))
    config = ServerConfig(listen="127.0.0.1:0", limits=replace(Limits(), max_concurrent_removals=1))
    thread = serve(containerd.address, config, containerd_interceptors=[slow])
    try:
        with store.record_events(ns, expect=2) as events, ImageRemovalClient(f"127.0.0.1:{thread.port}") as client:
            with pytest.raises(ImageRemovalError) as late:
                client.remove("ev", namespace=ns, timeout=0.5)
            assert late.value.code == "DEADLINE_EXCEEDED"
            with pytest.raises(ImageRemovalError) as busy:
                client.remove("next", namespace=ns)  # the first removal still holds the only slot
            assert busy.value.reason == Reason.TOO_MANY_REMOVALS
            assert wait_until(lambda: "docker.io/library/ev:latest" not in store.names(ns))
            assert wait_until(lambda: len(events.ours()) == 2, timeout=5)
        assert events.ours() == [("/imageremoval/untag", "ev:latest"), ("/imageremoval/delete", image_id)]
    finally:
        thread.stop()


def test_transport_limits_reach_grpc() -> None:
    options = dict(
        server_options(replace(Limits(), keepalive_time_s=30, max_connection_age_s=120, max_metadata_bytes=8192))
    )
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.max_connection_age_ms"] == 120_000
    assert options["grpc.max_metadata_size"] == 8192
    assert options["grpc.max_receive_message_length"] == 2 * Limits().max_message_bytes
    assert options["grpc.so_reuseport"] == 0


def test_oversized_metadata_is_refused_by_the_transport(containerd: PrivateContainerd) -> None:
    config = ServerConfig(listen="127.0.0.1:0", limits=replace(Limits(), max_metadata_bytes=4096))
    thread = serve(containerd.address, config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
            small = stub.Check(health_pb2.HealthCheckRequest(), metadata=(("x-small", "a" * 100),), timeout=5)
            assert small.status == health_pb2.HealthCheckResponse.SERVING  # answered, not refused
            with pytest.raises(grpc.RpcError) as caught:
                stub.Check(health_pb2.HealthCheckRequest(), metadata=(("x-big", "a" * 20_000),), timeout=5)
        assert caught.value.code() in {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL}
    finally:
        thread.stop()


def test_the_cli_speaks_mutual_tls(containerd: PrivateContainerd, pki: dict[str, Any], store: Store, ns: str) -> None:
    cert, key = pki["server"]
    config = ServerConfig(listen="127.0.0.1:0", tls=TlsConfig(cert, key, pki["folder"] / "ca.crt"))
    image_id = store.put(ns, ["docker.io/library/tls:latest"], manifest((file_layer("t", b"tls"),), note="tls"))
    client_cert, client_key = pki["alice"].write(pki["folder"], "alice")
    thread = serve(containerd.address, config)
    cli = [str(Path(sys.executable).parent / "imageremoval"), "rm", "--server", f"127.0.0.1:{thread.port}", "-n", ns]
    try:
        plain = subprocess.run([*cli, "tls"], capture_output=True, text=True, timeout=60, check=False)
        # A plaintext client cannot even connect to a TLS server: a local failure, in the CLI's own words.
        assert plain.returncode == 1 and plain.stderr.startswith("imageremoval: cannot connect to the server at")
        tls = ["--tls-ca", str(pki["folder"] / "ca.crt"), "--tls-cert", str(client_cert), "--tls-key", str(client_key)]
        done = subprocess.run([*cli, *tls, "tls"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["Untagged: tls:latest", f"Deleted: {image_id}"]
    finally:
        thread.stop()
