"""Behind a real L7 proxy (nginx, TLS at the proxy, HTTP/2 upstream): health, removals, errors, deadlines, drain."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imageremoval.client import (
    DeadlineExceededError,
    ImageRemovalClient,
    ImageRemovalError,
    NotFoundError,
    Tls,
    UnavailableError,
)
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason

from .support.images import file_layer, manifest
from .support.pki import Authority
from .support.proxy import Nginx, ServerProcess
from .support.store import Store

MIN_DEADLINE = 3.0  # the server under the proxy refuses calls with less left, so a short deadline shows it arrived
DRAIN_DELAY = 2.0


@dataclass
class Proxied:
    server: ServerProcess
    nginx: Nginx
    tls: Tls

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.nginx.port}"

    def client(self) -> ImageRemovalClient:
        return ImageRemovalClient(self.target, tls=self.tls, timeout=30)

    def health(self) -> int:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.tls.ca)
        with grpc.secure_channel(self.target, credentials) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(reply.status)


def _nginx_binary() -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        message = "nginx is missing: `make deploy-deps` installs Debian's nginx-light (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _start(folder: Path, containerd: PrivateContainerd) -> Proxied:
    _nginx_binary()
    ca = Authority()
    cert, key = ca.issue("proxy", dns=("localhost",), ips=("127.0.0.1",)).write(folder, "proxy")
    args = ["--min-deadline", str(MIN_DEADLINE), "--drain-delay", str(DRAIN_DELAY), "--grace-period", "10"]
    server = ServerProcess(folder, containerd.address, args)
    try:
        nginx = Nginx(folder, server.port, cert, key)
    except Exception:
        server.stop()
        raise
    proxied = Proxied(server, nginx, Tls(ca=ca.pem))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if proxied.health() == health_pb2.HealthCheckResponse.SERVING:
                return proxied
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server never answered SERVING through nginx")


@pytest.fixture
def proxied(tmp_path: Path, containerd: PrivateContainerd) -> Iterator[Proxied]:
    running = _start(tmp_path, containerd)
    yield running
    running.nginx.stop()
    running.server.stop()


def test_health_through_the_proxy(proxied: Proxied) -> None:
    assert proxied.health() == health_pb2.HealthCheckResponse.SERVING


def test_a_removal_through_the_proxy(proxied: Proxied, store: Store, ns: str) -> None:
    image_id = store.put(ns, ["docker.io/library/proxied:latest"], manifest((file_layer("p", b"p"),), note="proxied"))
    with proxied.client() as client:
        items = [str(item) for item in client.remove("proxied", namespace=ns)]
    assert items == ["Untagged: proxied:latest", f"Deleted: {image_id}"]
    assert store.names(ns) == set()


def test_a_refusals_error_info_survives_the_hop(proxied: Proxied, ns: str) -> None:
    with proxied.client() as client, pytest.raises(NotFoundError) as caught:
        client.remove("no-such-image:1", namespace=ns)
    assert (caught.value.reason, caught.value.domain) == (Reason.IMAGE_NOT_FOUND, "imageremoval.v1")
    assert caught.value.metadata["reference"] == "no-such-image:1"


def test_the_callers_deadline_reaches_the_server_through_the_proxy(proxied: Proxied, store: Store, ns: str) -> None:
    store.put(ns, ["docker.io/library/hurried:latest"], manifest((file_layer("h", b"h"),), note="hurried"))
    with proxied.client() as client, pytest.raises(DeadlineExceededError) as caught:
        client.remove("hurried", namespace=ns, timeout=MIN_DEADLINE - 1)
    # Our server refused it (ErrorInfo, and the time left it saw), so grpc-timeout crossed nginx.
    assert caught.value.reason == Reason.DEADLINE_EXCEEDED
    assert 0 < int(caught.value.metadata["remainingMs"]) <= (MIN_DEADLINE - 1) * 1000
    assert store.names(ns) == {"docker.io/library/hurried:latest"}


def test_a_drain_through_the_proxy_fails_no_call_in_flight(proxied: Proxied, store: Store, ns: str) -> None:
    images = 60
    for i in range(images):
        store.put(
            ns, [f"docker.io/library/drain{i}:latest"], manifest((file_layer("d", str(i).encode()),), note=f"{i}")
        )
    pending = list(range(images))
    lock = threading.Lock()
    done: list[tuple[int, float, float, str]] = []  # (image, started, ended, outcome)
    signalled = threading.Event()
    sigterm_at = [0.0]

    def worker() -> None:
        with proxied.client() as client:
            while True:
                with lock:
                    if not pending:
                        return
                    i = pending.pop(0)
                started = time.monotonic()
                try:
                    client.remove(f"drain{i}", namespace=ns)
                    outcome = "ok"
                except ImageRemovalError as error:
                    outcome = error.code
                with lock:
                    done.append((i, started, time.monotonic(), outcome))
                    if len(done) == 5:
                        signalled.set()
                if outcome != "ok":
                    return

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker) for _ in range(4)]
        assert signalled.wait(60)
        sigterm_at[0] = time.monotonic()
        proxied.server.sigterm()
        seen_not_serving = False
        for _ in range(100):
            try:
                if proxied.health() == health_pb2.HealthCheckResponse.NOT_SERVING:
                    seen_not_serving = True
                    break
            except grpc.RpcError:
                break
            time.sleep(0.02)
        for future in futures:
            future.result(120)
    assert proxied.server.wait(30) == 0
    assert seen_not_serving, "the proxy never saw NOT_SERVING during the drain"
    remaining = store.names(ns)
    at_sigterm = sigterm_at[0]
    before = [o for _, started, _, o in done if started < at_sigterm]
    assert before and all(o == "ok" for o in before), done  # started before SIGTERM: finished
    assert any(started < at_sigterm < ended for _, started, ended, _ in done), "no call was in flight at SIGTERM"
    assert any(started > at_sigterm and o == "ok" for _, started, _, o in done), "no call was served during the drain"
    for i, _, _, outcome in done:
        gone = f"docker.io/library/drain{i}:latest" not in remaining
        assert outcome in {"ok", "UNAVAILABLE"}, done
        assert gone == (outcome == "ok"), (i, outcome)  # nothing false: a failure removed nothing
    # Once the server is gone the proxy answers UNAVAILABLE (retryable), and nothing was removed.
    store.put(ns, ["docker.io/library/late:latest"], manifest((file_layer("l", b"late"),), note="late"))
    with proxied.client() as client, pytest.raises(UnavailableError):
        client.remove("late", namespace=ns, timeout=10)
    assert "docker.io/library/late:latest" in store.names(ns)
