"""Server wiring: build the gRPC server (factory returns it with its bound port), health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from imageremoval.gen.v1 import image_removal_pb2, image_removal_pb2_grpc
from imageremoval.server.cleaning.inventory import InventoryReader
from imageremoval.server.cleaning.plan_seal import PlanSeal
from imageremoval.server.cleaning.prune_execution import PruneExecutor
from imageremoval.server.cleaning.reclaim_loop import ReclaimLoop
from imageremoval.server.cleaning.space_reclaim import SpaceReclaimer
from imageremoval.server.cleaning.usage_tracker import UsageTracker
from imageremoval.server.cleaning.use_cases import NodeCleaning
from imageremoval.server.config import Limits, ServerConfig, is_unix, parse_listen, unix_path
from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.event_publisher import EventPublisher
from imageremoval.server.containerd.image_index import ImageIndex
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.policy import RemovalPolicy
from imageremoval.server.removal.reclaim import ReclaimEstimator
from imageremoval.server.removal.service import ImageRemover
from imageremoval.server.telemetry.metrics import RemovalMetrics, RequestRejections, ServiceGauges
from imageremoval.server.telemetry.names import TRACER_NAME
from imageremoval.server.telemetry.reclaim_metrics import ReclaimMetrics
from imageremoval.server.telemetry.rpc import ContainerdTracing, ServerTelemetry, dup_mode
from imageremoval.server.transport.credentials import server_credentials
from imageremoval.server.transport.health import DrainingHealthServicer
from imageremoval.server.transport.input_guard import AnswerEveryCall, RequestGuard, transport_limit
from imageremoval.server.transport.listeners import ListenError, UnixListener, check_port_free
from imageremoval.server.transport.reflection import enable_reflection
from imageremoval.server.transport.servicer import ImageRemovalServicer

_log = logging.getLogger(__name__)

SERVICE_NAME = image_removal_pb2.DESCRIPTOR.services_by_name["ImageRemovalService"].full_name
HEALTH_POLL_SECONDS = 2.0
MAX_STREAMS_PER_CONNECTION = 100


@dataclass(slots=True)
class App:
    """A built server: start it, watch containerd's health, stop it gracefully."""

    server: grpc.aio.Server
    port: int  # the first TCP listener's bound port (0 when only unix sockets are served)
    health: DrainingHealthServicer
    client: ContainerdClient
    remover: ImageRemover
    drain_seconds: float = 0.0
    unix_sockets: tuple[UnixListener, ...] = ()
    gauges: ServiceGauges | None = None
    health_server: grpc.aio.Server | None = None  # plaintext grpc.health.v1 only (--health-listen)
    health_port: int = 0
    tracker: UsageTracker | None = None
    reclaim_loop: ReclaimLoop | None = None
    reclaimer: SpaceReclaimer | None = None
    index: ImageIndex | None = None
    _monitor: asyncio.Task[None] | None = field(default=None)
    _stopping: bool = False

    async def start(self) -> None:
        """Serve, NOT_SERVING until containerd answers."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        self._monitor = asyncio.create_task(self._watch_containerd(), name="containerd-health")
        if self.index is not None:
            self.index.start()
        if self.tracker is not None:
            self.tracker.start()
        if self.reclaim_loop is not None:
            self.reclaim_loop.start()

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def _watch_containerd(self) -> None:
        serving: bool | None = None
        while not self._stopping:
            try:
                with suppress_instrumentation():  # a probe every few seconds is not worth a trace each
                    version = await self.client.version()
                up = True
            except RemovalError as exc:
                up, version = False, ""
                if serving is not False:
                    why = "; ".join([exc.message, *getattr(exc, "__notes__", ())])
                    _log.warning("containerd is not answering: %s", why)
            if self.gauges is not None:
                self.gauges.containerd_up = up
            if up != serving and not self._stopping:
                await self._set_all(
                    health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                if up:
                    _log.info("containerd %s answers; serving", version, extra={"containerdVersion": version})
                serving = up
            await asyncio.sleep(HEALTH_POLL_SECONDS if up else 0.2)

    async def stop(self, grace: float) -> None:
        """Health first (meshes stop routing during the drain delay), then stop accepting, then let in-flight
        calls (and any mutation a cancelled call started) finish within the grace period."""
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self.drain_seconds:
            _log.info("health is NOT_SERVING; draining for %gs before refusing new calls", self.drain_seconds)
            await asyncio.sleep(self.drain_seconds)
        for background in (self.reclaim_loop, self.tracker):
            if background is not None:
                await background.stop()
        self.health.end_watches()  # open Watch streams would otherwise hold the whole grace period
        await self.server.stop(grace)
        for listener in self.unix_sockets:
            listener.remove()
        if self.health_server is not None:
            await self.health_server.stop(0)  # probes saw NOT_SERVING for the whole drain
        await self.remover.drain(grace)
        if self.index is not None:
            await self.index.stop()
        await self.client.close()


def server_options(limits: Limits) -> list[tuple[str, int]]:
    """Keepalive, connection age (so clients rebalance) and size limits, as gRPC channel arguments."""
    return [
        ("grpc.keepalive_time_ms", int(limits.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(limits.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.max_connection_age_ms", int(limits.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(limits.max_connection_age_grace_s * 1000)),
        # gRPC refuses a request twice our limit (on the wire, or while inflating it) before buffering it all;
        # between the two, the guard refuses it with REQUEST_TOO_LARGE, logged and counted.
        ("grpc.max_receive_message_length", transport_limit(limits.max_message_bytes)),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.max_metadata_size", limits.max_metadata_bytes),
        ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it silently
        # Advertised in SETTINGS: one connection cannot open thousands of streams.
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
    ]


def create_server(
    config: ServerConfig,
    containerd_address: str,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    containerd_interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> App:
    """Build (not start) the server on config's listeners; TCP port 0 binds a free port, reported in App.port.

    Providers are passed in (no global state); without them, spans and metrics go nowhere.
    """
    tracer_provider = tracer_provider or trace.NoOpTracerProvider()
    meter_provider = meter_provider or metrics.NoOpMeterProvider()
    tracing = not isinstance(tracer_provider, trace.NoOpTracerProvider)
    measuring = not isinstance(meter_provider, metrics.NoOpMeterProvider)
    # Instrumentation only where something records it: each interceptor costs Python time on every call.
    client = ContainerdClient.connect(
        containerd_address,
        interceptors=[
            *([ContainerdTracing(tracer_provider, containerd_address)] if tracing else []),  # type: ignore[list-item]
            *containerd_interceptors,
        ],
    )
    tracer = tracer_provider.get_tracer(TRACER_NAME)
    # Outermost, one telemetry layer (caller for the logs, server span, RPC duration; health and reflection are
    # not traced), so everything inside is covered: then every unary call gets an answer even without a request
    # message, then the guard, whose refusals (on every service) are logged and counted.
    rejections = RequestRejections(meter_provider if measuring else None)
    interceptors: list[Any] = [
        ServerTelemetry(
            tracer_provider if tracing else None, meter_provider if measuring else None, dup=dup_mode(os.environ)
        ),
        AnswerEveryCall(on_reject=rejections),
        RequestGuard(config.limits.max_message_bytes, on_reject=rejections),
    ]
    server = grpc.aio.server(interceptors=interceptors, options=server_options(config.limits))
    policy = RemovalPolicy(
        allowed_namespaces=config.allowed_namespaces,
        identity_namespaces=config.identity_namespaces,
        protected_patterns=config.protected_images,
        allow_force_protected=config.allow_force_protected,
        max_concurrent=config.limits.max_concurrent_removals,
        min_deadline_s=config.limits.min_deadline_s,
    )
    events = EventPublisher(client, tracer)
    index = ImageIndex(client)
    unindexed = client.without_index()
    client.attach_index(index)  # every store answers its record questions from the index
    remover = ImageRemover(client, tracer, RemovalMetrics(meter_provider) if measuring else None, policy, events=events)
    reader = InventoryReader(client, policy)
    executor = PruneExecutor(client, remover, policy)
    min_age_ns = int(config.usage.min_age_s * 1e9)
    reclaim_metrics = ReclaimMetrics(meter_provider) if measuring else None
    reclaimer = SpaceReclaimer(
        reader, executor, policy, config.containerd_root, min_age_ns=min_age_ns, metrics=reclaim_metrics
    )
    servicer = ImageRemovalServicer(
        remover,
        config.namespace,
        cleaning=NodeCleaning(reader, policy, min_age_ns=min_age_ns),
        executor=executor,
        seal=PlanSeal.from_file(config.plan_key_file),
        reclaim=ReclaimEstimator(client, remover, reader),
        max_response_bytes=config.limits.max_message_bytes,
        space=reclaimer,
    )
    image_removal_pb2_grpc.add_ImageRemovalServiceServicer_to_server(servicer, server)
    health = DrainingHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    enable_reflection(server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
    credentials = server_credentials(config.tls) if config.tls is not None else None
    # First, so a failure leaves no socket behind; the same interceptors guard it as the main port.
    health_server, health_port = _health_only_server(config, health, interceptors)
    tcp_port = 0
    sockets: list[UnixListener] = []
    try:
        for address in config.listeners:
            listener: UnixListener | None = None
            if is_unix(address):
                listener = UnixListener(unix_path(address))
                sockets.append(listener)
                target = listener.prepare()
            else:
                host, port = parse_listen(address)
                # Checked again though the CLI checked before starting containerd: the port may have been
                # taken since (and create_server has callers other than the CLI).
                check_port_free(host, port)
                target = f"{host}:{port}"
            try:
                bound = server.add_secure_port(target, credentials) if credentials else server.add_insecure_port(target)
            except RuntimeError:  # gRPC's "Failed to bind": the port was taken after our check
                bound = 0
            if bound == 0:
                why = "cannot bind the socket" if listener else "the port is already in use or not available"
                raise ListenError(f"cannot listen on {address}: {why}")
            if listener is not None:
                listener.publish()
            elif tcp_port == 0:
                tcp_port = bound
    except BaseException:
        for listener in sockets:
            listener.discard_staging()
            listener.remove()
        raise
    return App(
        server=server,
        port=tcp_port,
        health=health,
        client=client,
        remover=remover,
        drain_seconds=config.drain_seconds,
        unix_sockets=tuple(sockets),
        gauges=ServiceGauges(meter_provider) if measuring else None,
        health_server=health_server,
        health_port=health_port,
        tracker=(
            UsageTracker(  # its reads are point reads: it needs no barrier of the image index
                unindexed, unindexed, InventoryReader(unindexed, policy), config.usage, metrics=reclaim_metrics
            )
            if config.usage.enabled
            else None
        ),
        reclaim_loop=ReclaimLoop(client, reclaimer, config.reclaim) if config.reclaim.enabled else None,
        reclaimer=reclaimer,
        index=index,
    )


def _health_only_server(
    config: ServerConfig, health: DrainingHealthServicer, interceptors: Sequence[Any]
) -> tuple[grpc.aio.Server | None, int]:
    """The --health-listen server: the same health servicer (so the same answers), nothing else, plaintext,
    because Kubernetes' gRPC probes cannot speak TLS."""
    if config.health_listen is None:
        return None, 0
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4096)],
        maximum_concurrent_rpcs=64,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    host, port = parse_listen(config.health_listen)
    check_port_free(host, port)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # gRPC's "Failed to bind": the port was taken after our check
        bound = 0
    if bound == 0:
        raise ListenError(f"cannot listen on {config.health_listen} (--health-listen): the port is not available")
    return server, bound
