"""Server wiring: build the gRPC server (factory returns it with its bound port), health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from imageremoval.gen.v1 import image_removal_pb2, image_removal_pb2_grpc

from .config import ServerConfig, parse_listen
from .containerd import ContainerdClient
from .errors import RemovalError
from .removal import ImageRemover
from .servicer import ImageRemovalServicer
from .telemetry import TRACER_NAME

_log = logging.getLogger(__name__)

SERVICE_NAME = image_removal_pb2.DESCRIPTOR.services_by_name["ImageRemovalService"].full_name
HEALTH_POLL_SECONDS = 2.0


@dataclass(slots=True)
class App:
    """A built server: start it, watch containerd's health, stop it gracefully."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    client: ContainerdClient
    _monitor: asyncio.Task[None] | None = field(default=None)
    _stopping: bool = False

    async def start(self) -> None:
        """Serve, NOT_SERVING until containerd answers."""
        await self.server.start()
        self._monitor = asyncio.create_task(self._watch_containerd(), name="containerd-health")

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def _watch_containerd(self) -> None:
        serving: bool | None = None
        while not self._stopping:
            try:
                version = await self.client.version()
                up = True
            except RemovalError as exc:
                up, version = False, ""
                if serving is not False:
                    _log.warning("containerd is not answering: %s", exc.message)
            if up != serving and not self._stopping:
                await self._set_all(
                    health_pb2.HealthCheckResponse.SERVING
                    if up
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                if up:
                    _log.info("containerd answers; serving", extra={"containerdVersion": version})
                serving = up
            await asyncio.sleep(HEALTH_POLL_SECONDS if up else 0.2)

    async def stop(self, grace: float) -> None:
        """Health first (so meshes stop routing), then stop accepting and let in-flight calls finish."""
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self.server.stop(grace)
        await self.client.close()


def create_server(
    config: ServerConfig,
    containerd_address: str,
    *,
    tracer_provider: trace.TracerProvider | None = None,
) -> App:
    """Build (not start) the server bound to config.listen; port 0 binds a free port, reported in App.port."""
    host, port = parse_listen(config.listen)
    client = ContainerdClient.connect(containerd_address)
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(TRACER_NAME)
    server = grpc.aio.server()
    image_removal_pb2_grpc.add_ImageRemovalServiceServicer_to_server(
        ImageRemovalServicer(ImageRemover(client, tracer), config.namespace), server
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {config.listen}")
    return App(server=server, port=bound, health=health, client=client)
