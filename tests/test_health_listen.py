"""The plaintext health-only listener (--health-listen): probes get health with TLS on, and nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace import TracerProvider

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc
from imageremoval.server.config import ConfigError, ServerConfig, TlsConfig, load_config
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason

from .support.pki import Authority
from .support.server import SERVICE, ServerThread, health
from .support.status import error_info
from .support.waiting import wait_until


def test_health_listener_is_off_by_default_and_set_by_flag_or_environment() -> None:
    assert load_config([], {}).health_listen is None
    assert load_config(["--health-listen", "127.0.0.1:8081"], {}).health_listen == "127.0.0.1:8081"
    assert load_config([], {"IMAGEREMOVAL_HEALTH_LISTEN": "[::1]:8081"}).health_listen == "[::1]:8081"


def test_a_non_loopback_health_listener_must_be_asked_for() -> None:
    with pytest.raises(ConfigError, match=r"--health-listen / IMAGEREMOVAL_HEALTH_LISTEN.*--insecure"):
        load_config(["--health-listen", "0.0.0.0:8081"], {})
    with pytest.raises(ConfigError, match="--health-listen"):
        load_config(["--health-listen", "unix:///run/health.sock"], {})
    config = load_config(["--health-listen", "0.0.0.0:8081", "--insecure"], {})
    assert config.health_listen == "0.0.0.0:8081"


def test_with_tls_on_probes_get_plaintext_health_and_nothing_else(
    containerd: PrivateContainerd, tmp_path: Path
) -> None:
    ca = Authority()
    cert, key = ca.issue("imageremoval", dns=("localhost",), ips=("127.0.0.1",)).write(tmp_path, "server")
    config = ServerConfig(listen="127.0.0.1:0", tls=TlsConfig(cert, key), health_listen="127.0.0.1:0")
    thread = ServerThread(config, containerd.address, TracerProvider())
    stopped = False
    try:
        health_port = thread.app.health_port
        assert health_port not in (0, thread.port)
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe:
            assert wait_until(lambda: health(probe, "") == health_pb2.HealthCheckResponse.SERVING)
            assert health(probe, SERVICE) == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.ImageRemovalServiceStub(probe).RemoveImage(pb.RemoveImageRequest(image="busybox"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The main port still speaks only TLS.
        with grpc.insecure_channel(f"127.0.0.1:{thread.port}") as plain, pytest.raises(grpc.RpcError) as refused:
            health(plain, "")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        thread.stop()
        stopped = True
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe, pytest.raises(grpc.RpcError) as gone:
            health(probe, "")
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if not stopped:
            thread.stop()


def test_the_health_listener_turns_not_serving_when_shutdown_begins(containerd: PrivateContainerd) -> None:
    config = ServerConfig(listen="127.0.0.1:0", health_listen="127.0.0.1:0", drain_seconds=3)
    thread = ServerThread(config, containerd.address, TracerProvider())
    with grpc.insecure_channel(f"127.0.0.1:{thread.app.health_port}") as probe:
        assert wait_until(lambda: health(probe, "") == health_pb2.HealthCheckResponse.SERVING)
        stopping = asyncio.run_coroutine_threadsafe(thread.app.stop(1), thread.loop)  # drains for 3 s
        assert wait_until(lambda: health(probe, "") == health_pb2.HealthCheckResponse.NOT_SERVING)
        stopping.result(20)
    thread.loop.call_soon_threadsafe(thread.loop.stop)


def test_garbage_to_the_health_listener_is_refused_like_on_the_main_port(containerd: PrivateContainerd) -> None:
    config = ServerConfig(listen="127.0.0.1:0", health_listen="127.0.0.1:0")
    thread = ServerThread(config, containerd.address, TracerProvider())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{thread.app.health_port}") as probe:
            with pytest.raises(grpc.RpcError) as caught:
                probe.unary_unary("/grpc.health.v1.Health/Check", None, None)(b"\xff\xff\xff\xff", timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(caught.value).reason == Reason.MALFORMED_REQUEST
    finally:
        thread.stop()
