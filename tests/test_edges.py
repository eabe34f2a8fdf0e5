"""The server's edge under hostile clients and unlucky operators: memory, ports, sockets, identities, shutdown."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.env import ServerProcess
from bench.request_memory import BOMB_BYTES, PLAIN_BYTES, _payload, measure
from imageremoval.client import ImageRemovalClient, ImageRemovalError
from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc
from imageremoval.server.config import Limits, ServerConfig, TlsConfig
from imageremoval.server.containerd.client import RECONNECT_BACKOFF_MS
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason
from imageremoval.server.transport.listeners import UnixListener

from .support.h2 import rapid_reset, server_settings
from .support.images import file_layer, manifest
from .support.interceptors import SlowDeletes
from .support.pki import Authority
from .support.server import SERVICE, health, serve
from .support.status import error_info
from .support.store import Store
from .support.waiting import wait_until

SERVER_BIN = Path(sys.executable).parent / "imageremoval-server"


# Memory is bounded by the request limit, not by gzip (issue 9, item 2)


def test_oversized_and_gzip_bomb_requests_are_refused_before_they_are_buffered(
    containerd: PrivateContainerd, tmp_path: Path
) -> None:
    # Before the fix, four of each drove the server's peak memory up by well over 100 MiB.
    with ServerProcess(containerd.address, tmp_path / "server.log") as server:
        bombs = measure(server, "bomb", _payload(BOMB_BYTES), 4, grpc.Compression.Gzip)
        plain = measure(server, "plain", _payload(PLAIN_BYTES), 4, grpc.Compression.NoCompression)
        with ImageRemovalClient(server.target) as client, pytest.raises(ImageRemovalError) as caught:
            client.remove("still-serving-after-that")
    assert bombs["codes"] == plain["codes"] == ["RESOURCE_EXHAUSTED"]
    assert float(plain["rss_peak_mb"]) - float(bombs["rss_before_mb"]) < 64, (bombs, plain)  # type: ignore[arg-type]
    assert caught.value.reason == Reason.IMAGE_NOT_FOUND


# Two servers on one port (item 13)


def test_a_second_server_on_a_taken_port_refuses_to_start_with_one_line(
    containerd: PrivateContainerd, tmp_path: Path
) -> None:
    first = serve(containerd.address, ServerConfig(listen="127.0.0.1:0"))
    try:
        command = [str(SERVER_BIN), "--listen", f"127.0.0.1:{first.port}", "--containerd-address", containerd.address]
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
            pytest.fail("a second server started on a port that was taken")
        assert second.returncode == 1
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "already in use" in lines[0] and "Traceback" not in stderr, stderr
        with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
        # Without --containerd-address the check comes before a private containerd is started for nothing.
        run_dir = tmp_path / "run"
        command = [str(SERVER_BIN), "--listen", f"127.0.0.1:{first.port}", "--run-dir", str(run_dir)]
        third = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert third.returncode == 1 and "already in use" in third.stderr
        assert not (run_dir / "containerd").exists()
    finally:
        first.stop()


# Unix sockets (item 18)


def test_a_unix_socket_is_bound_out_of_reach_and_appears_only_with_its_final_mode(tmp_path: Path) -> None:
    path = tmp_path / "open.sock"
    listener = UnixListener(path)
    old = os.umask(0)
    try:
        target = Path(listener.prepare().removeprefix("unix:"))
        staging = target.parent
        assert staging != path.parent and staging.parent == path.parent  # a private directory beside the path
        assert stat.S_IMODE(staging.stat().st_mode) == 0o700  # nobody else can reach what is bound in it
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
            bound.bind(str(target))  # what gRPC does with the address, here with umask 000
            assert not path.exists()  # nothing at the final path until publish()
            listener.publish()
            assert stat.S_ISSOCK(path.lstat().st_mode) and stat.S_IMODE(path.lstat().st_mode) == 0o660
            assert not staging.exists()
    finally:
        os.umask(old)
        listener.remove()
    assert not path.exists()


def test_a_served_unix_socket_has_its_final_mode_even_with_umask_000(
    containerd: PrivateContainerd, tmp_path: Path
) -> None:
    path = tmp_path / "open.sock"
    old = os.umask(0)
    try:
        thread = serve(containerd.address, ServerConfig(listen=f"unix://{path}"))
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o660
        assert [p.name for p in tmp_path.iterdir()] == ["open.sock"]  # no staging directory left behind
    finally:
        thread.stop()
    assert not path.exists()  # ours, so removed at shutdown


def test_a_unix_listen_path_that_is_not_a_stale_socket_is_never_removed(
    containerd: PrivateContainerd, tmp_path: Path
) -> None:
    regular = tmp_path / "notes.txt"
    regular.write_text("precious")
    with pytest.raises(OSError, match="not a socket"):
        serve(containerd.address, ServerConfig(listen=f"unix://{regular}"))
    assert regular.read_text() == "precious"

    live = tmp_path / "live.sock"
    first = serve(containerd.address, ServerConfig(listen=f"unix://{live}"))
    try:
        with pytest.raises(OSError, match="already listening"):
            serve(containerd.address, ServerConfig(listen=f"unix://{live}"))
        with grpc.insecure_channel(f"unix://{live}") as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
    finally:
        first.stop()

    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))  # bound, never listening: what a killed server leaves behind
    replacement = serve(containerd.address, ServerConfig(listen=f"unix://{stale}"))
    try:
        with grpc.insecure_channel(f"unix://{stale}") as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
    finally:
        replacement.stop()


# Identity kinds (item 17) and a deleted client CA (item 19)


def _tls_channel(port: int, ca_pem: bytes, client: Any) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(ca_pem, private_key=client.key, certificate_chain=client.cert)
    return grpc.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[tuple[Authority, Path, tuple[Path, Path]]]:
    ca = Authority()
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    yield ca, tmp_path / "ca.crt", ca.issue("imageremoval", dns=("localhost",), ips=("127.0.0.1",)).write(tmp_path, "s")


def test_a_common_name_that_spells_a_spiffe_id_is_not_that_spiffe_id(
    containerd: PrivateContainerd, store: Store, ns: str, authority: tuple[Authority, Path, tuple[Path, Path]]
) -> None:
    ca, ca_file, (cert, key) = authority
    store.put(ns, ["docker.io/library/a:1", "docker.io/library/b:1"], manifest((file_layer("i", b"id"),), note="id"))
    config = ServerConfig(
        listen="127.0.0.1:0",
        tls=TlsConfig(cert, key, ca_file),
        identity_namespaces={"spiffe://test/ops": frozenset({ns}), "cn:carol": frozenset({ns})},
    )
    thread = serve(containerd.address, config)
    try:
        with _tls_channel(thread.port, ca.pem, ca.issue("spiffe://test/ops")) as channel:
            stub = pb_grpc.ImageRemovalServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.RemoveImage(pb.RemoveImageRequest(image="a:1", namespace=ns), timeout=30)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_info(caught.value).metadata["identity"] == "cn:spiffe://test/ops"
        with _tls_channel(thread.port, ca.pem, ca.issue("ops", uris=("spiffe://test/ops",))) as channel:
            stub = pb_grpc.ImageRemovalServiceStub(channel)
            assert stub.RemoveImage(pb.RemoveImageRequest(image="a:1", namespace=ns), timeout=30).items
        with _tls_channel(thread.port, ca.pem, ca.issue("carol")) as channel:
            stub = pb_grpc.ImageRemovalServiceStub(channel)
            assert stub.RemoveImage(pb.RemoveImageRequest(image="b:1", namespace=ns), timeout=30).items
        assert store.names(ns) == set()
    finally:
        thread.stop()


@pytest.mark.parametrize("cert_file", ["leaf", "fullchain"])
def test_a_deleted_client_ca_file_stops_trusting_that_ca(
    containerd: PrivateContainerd, authority: tuple[Authority, Path, tuple[Path, Path]], cert_file: str
) -> None:
    ca, ca_file, (cert, key) = authority
    if cert_file == "fullchain":  # leaf + the CA that also signs clients, as fullchain.pem files are
        cert.write_bytes(cert.read_bytes() + ca.pem)
    alice = ca.issue("alice")
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0", tls=TlsConfig(cert, key, ca_file)))
    try:
        with _tls_channel(thread.port, ca.pem, alice) as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
        ca_file.unlink()
        with _tls_channel(thread.port, ca.pem, alice) as channel, pytest.raises(grpc.RpcError) as caught:
            health(channel)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake is refused
        ca_file.write_bytes(ca.pem)
        with _tls_channel(thread.port, ca.pem, alice) as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        thread.stop()


# Every service gets the guard (item 15)


@pytest.mark.parametrize(
    ("method", "streaming"),
    [
        ("/grpc.health.v1.Health/Check", "unary"),
        ("/grpc.health.v1.Health/Watch", "response"),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "both"),
    ],
)
def test_garbage_to_health_and_reflection_is_invalid_argument_with_error_info(
    containerd: PrivateContainerd, method: str, streaming: str
) -> None:
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0"))
    garbage = b"\xff\xff\xff\xff"
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel, pytest.raises(grpc.RpcError) as caught:
            if streaming == "unary":
                channel.unary_unary(method, None, None)(garbage, timeout=10)
            elif streaming == "response":
                list(channel.unary_stream(method, None, None)(garbage, timeout=10))
            else:
                list(channel.stream_stream(method, None, None)(iter([garbage]), timeout=10))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == Reason.MALFORMED_REQUEST
        assert "Error" not in (caught.value.details() or "")  # no Python exception class
    finally:
        thread.stop()


# Open streams and zero-message calls at shutdown (item 12)


def test_watch_streams_and_zero_message_calls_neither_hang_nor_hold_shutdown(containerd: PrivateContainerd) -> None:
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0"))
    channel = grpc.insecure_channel(f"127.0.0.1:{thread.port}")
    try:
        for method in (f"/{SERVICE}/RemoveImage", "/grpc.health.v1.Health/Check"):
            with pytest.raises(grpc.RpcError) as caught:
                channel.stream_unary(method, None, None)(iter(()), timeout=10)  # half-closed, no message
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert error_info(caught.value).reason == Reason.MALFORMED_REQUEST
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        statuses: list[int] = []
        reader = threading.Thread(target=lambda: statuses.extend(int(r.status) for r in watch), daemon=True)
        reader.start()
        assert wait_until(lambda: statuses[-1:] == [health_pb2.HealthCheckResponse.SERVING])
        thread.stop(grace=30)
        reader.join(30)
    finally:
        channel.close()
    # Ended by the server with OK (a stream still open at the grace deadline is cancelled instead), so
    # shutdown did not wait its grace period for a stream that had nothing to finish.
    assert not reader.is_alive() and watch.code() == grpc.StatusCode.OK, watch.code()
    assert statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING


# HTTP/2 stream limits and a fair share of removal slots (item 16)


def test_http2_settings_limit_the_streams_of_one_connection(containerd: PrivateContainerd) -> None:
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0"))
    try:
        settings = server_settings(thread.port)
    finally:
        thread.stop()
    assert 0 < settings.get(0x3, 0) <= 1000  # SETTINGS_MAX_CONCURRENT_STREAMS, absent before


def test_rapid_resets_from_one_client_do_not_fail_anyone_else(containerd: PrivateContainerd) -> None:
    # Before the limit, 2 x 50,000 HEADERS+RST_STREAM pairs failed about 40 of 110 innocent health checks.
    thread = serve(containerd.address, ServerConfig(listen="127.0.0.1:0"))
    attackers = [
        threading.Thread(target=rapid_reset, args=(thread.port, "/grpc.health.v1.Health/Check", 50_000))
        for _ in range(2)
    ]
    outcomes: dict[str, int] = {}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            for attacker in attackers:
                attacker.start()
            calls = 0
            while calls < 110 or any(a.is_alive() for a in attackers):
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                    outcome = "OK"
                except grpc.RpcError as exc:
                    outcome = exc.code().name
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                calls += 1
                time.sleep(0.02)
    finally:
        for attacker in attackers:
            attacker.join(60)
        thread.stop()
    assert set(outcomes) == {"OK"}, outcomes


class CountedSlowDeletes(SlowDeletes):
    """SlowDeletes that also says how many image deletes have started."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.count = 0
        self._changed = threading.Condition()

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        if method.endswith(".Images/Delete"):
            with self._changed:
                self.count += 1
                self._changed.notify_all()
        return await super().intercept_unary_unary(continuation, details, request)

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout=30)


def test_one_client_cannot_take_every_removal_slot_while_another_waits(
    containerd: PrivateContainerd, store: Store, ns: str, tmp_path: Path
) -> None:
    slow = CountedSlowDeletes(2.0)
    for name in ("first", "second", "third", "fourth", "other"):
        store.put(ns, [f"docker.io/library/{name}:1"], manifest((file_layer(name, name.encode()),), note=name))
    sock = tmp_path / "other-client.sock"
    config = ServerConfig(
        listen="127.0.0.1:0",
        extra_listen=(f"unix://{sock}",),
        limits=replace(Limits(), max_concurrent_removals=2),
    )
    thread = serve(containerd.address, config, containerd_interceptors=[slow])

    def in_background(client: ImageRemovalClient, image: str) -> threading.Thread:
        worker = threading.Thread(target=client.remove, args=(image,), kwargs={"namespace": ns})
        worker.start()
        return worker

    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as agent, ImageRemovalClient(f"unix://{sock}") as other:
            # Alone on the node, one client gets every slot: no share is held back for nobody.
            alone = [in_background(agent, "first:1")]
            assert slow.wait_for(1)
            alone.append(in_background(agent, "second:1"))
            assert slow.wait_for(2)
            with pytest.raises(ImageRemovalError) as full:
                other.remove("other:1", namespace=ns)  # no slot is free: the other client now waits
            assert (full.value.code, full.value.reason) == ("RESOURCE_EXHAUSTED", Reason.TOO_MANY_REMOVALS)
            assert "clientLimit" not in full.value.metadata
            for worker in alone:
                worker.join(30)
            # While the other client waits, the first one is held to its share (1 of 2).
            held = in_background(agent, "third:1")
            assert slow.wait_for(3)
            with pytest.raises(ImageRemovalError) as refused:
                agent.remove("fourth:1", namespace=ns)
            assert (refused.value.code, refused.value.reason) == ("RESOURCE_EXHAUSTED", Reason.TOO_MANY_REMOVALS)
            assert refused.value.metadata["clientLimit"] == "1"
            assert [item.kind for item in other.remove("other:1", namespace=ns)][-1] == "deleted"
            held.join(30)
        assert store.names(ns) == {"docker.io/library/fourth:1"}
    finally:
        thread.stop()


# containerd's socket path stays in the server log (item 19)


def test_unavailable_answers_do_not_show_the_containerd_socket_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "nobody-home" / "containerd.sock")
    caplog.set_level("WARNING", logger="imageremoval")
    thread = serve(missing, ServerConfig(listen="127.0.0.1:0"))
    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client, pytest.raises(ImageRemovalError) as caught:
            client.remove("busybox")
        assert caught.value.reason == Reason.CONTAINERD_UNAVAILABLE
        assert missing not in caught.value.message and "nobody-home" not in str(caught.value.metadata)
        assert wait_until(lambda: missing in caplog.text, timeout=5)
    finally:
        thread.stop()


# Prompt recovery after a containerd outage (item 10)


@pytest.fixture
def own_containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateContainerd]:
    daemon = PrivateContainerd(tmp_path_factory.mktemp("outage"))
    daemon.start()
    yield daemon
    daemon.stop()


class VersionPolls(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Counts the server's containerd health probes (Version) that fail once containerd is back."""

    def __init__(self) -> None:
        self.back = threading.Event()
        self.failed_after_back = 0

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        call = await continuation(details, request)
        if method.endswith(".Version/Version") and self.back.is_set():
            try:
                failed = await call.code() != grpc.StatusCode.OK
            except grpc.aio.AioRpcError:
                failed = True
            self.failed_after_back += failed
        return call


def test_service_recovers_promptly_after_a_long_containerd_outage(own_containerd: PrivateContainerd) -> None:
    # gRPC's default reconnect backoff had grown to about 10 s after a 20 s outage: the server's probe (every
    # 0.2 s while containerd is down) then failed about 50 times after containerd was back. With a reconnect
    # backoff of at most RECONNECT_BACKOFF_MS[1] (plus gRPC's 20% jitter) only the probes in that window fail.
    # Counted, not timed; `python -m bench.recovery` measures the time.
    polls = VersionPolls()
    thread = serve(own_containerd.address, ServerConfig(listen="127.0.0.1:0"), containerd_interceptors=[polls])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as channel:
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING)
            own_containerd.stop()
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING)
            time.sleep(20)  # the outage itself: long enough for gRPC's default backoff to grow
            own_containerd.start()  # returns once containerd accepts connections
            polls.back.set()
            assert wait_until(lambda: health(channel) == health_pb2.HealthCheckResponse.SERVING, timeout=60)
    finally:
        thread.stop()
    window_polls = RECONNECT_BACKOFF_MS[1] / 1000 * 1.2 / 0.2
    assert polls.failed_after_back <= 2 * window_polls + 2, polls.failed_after_back
