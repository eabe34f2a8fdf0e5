"""A real server on port 0 in a thread of its own, and what a test can observe of it."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imageremoval.server.app import App, create_server
from imageremoval.server.config import ServerConfig

REPO = Path(__file__).resolve().parent.parent.parent
SERVICE = "imageremoval.v1.ImageRemovalService"


class ServerThread:
    """A real server on port 0 with its own event loop, so tests can use blocking clients."""

    def __init__(self, config: ServerConfig, address: str, provider: TracerProvider, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.app: App = self.call(self._build(config, address, provider, options))
        self.port = self.app.port

    async def _build(self, config: ServerConfig, address: str, provider: TracerProvider, options: Any) -> App:
        app = create_server(config, address, tracer_provider=provider, **options)
        await app.start()
        return app

    def call(self, coroutine: object, timeout: float = 60) -> App:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, grace: float = 5) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(grace), self.loop).result(grace + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclass
class Server:
    """The running server and what a test can observe of it."""

    thread: ServerThread
    spans: InMemorySpanExporter

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.thread.port}"


def serve(address: str, config: ServerConfig, **options: Any) -> ServerThread:
    """A server of the test's own on containerd at `address`, traced nowhere."""
    return ServerThread(config, address, TracerProvider(), **options)


def health(where: grpc.Channel | str, service: str = SERVICE) -> int:
    """The health status the server reports for `service` (a channel, or a target to open one to)."""
    if isinstance(where, str):
        with grpc.insecure_channel(where) as channel:
            return health(channel, service)
    reply = health_pb2_grpc.HealthStub(where).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)
