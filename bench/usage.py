"""Scenario 8 (issue 15): what usage tracking costs under a churn of containers (label writes, CPU)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import grpc
from google.protobuf import any_pb2

from imageremoval.gen.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from imageremoval.gen.containerd.services.events.v1 import events_pb2, events_pb2_grpc

from .content import unique_manifest
from .env import ServerProcess, cpu_seconds
from .stats import Goal, Row, Target

if TYPE_CHECKING:
    from .scenarios import Context

RATE = 10  # containers created (and deleted a second later) per second
WRITE_INTERVAL_S = 300  # the server's default --usage-write-interval


class _Updates:
    """Counts /images/update events of one namespace: every label write is one Images.Update."""

    def __init__(self, address: str, namespace: str) -> None:
        self._channel = grpc.insecure_channel(f"unix://{address}")
        stub = events_pb2_grpc.EventsStub(self._channel)
        self._call = stub.Subscribe(
            events_pb2.SubscribeRequest(filters=[f'namespace=="{namespace}",topic=="/images/update"'])
        )
        self.count = 0
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for _ in self._call:
                self.count += 1
        except grpc.RpcError:
            pass

    def close(self) -> None:
        time.sleep(0.5)  # let the last events arrive
        self._call.cancel()
        self._thread.join(5)
        self._channel.close()


def _churn(address: str, namespace: str, images: list[str], seconds: float) -> int:
    """Create RATE containers a second over the images (round robin), each deleted a second later."""
    channel = grpc.insecure_channel(f"unix://{address}")
    stub = containers_pb2_grpc.ContainersStub(channel)
    md = (("containerd-namespace", namespace),)
    alive: list[tuple[float, str]] = []
    created = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            due = started + created / RATE
            time.sleep(max(0.0, due - time.perf_counter()))
            container = containers_pb2.Container(
                id=f"churn-{created}",
                image=images[created % len(images)],
                runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
                spec=any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}"),
            )
            stub.Create(containers_pb2.CreateContainerRequest(container=container), metadata=md)
            alive.append((time.perf_counter(), container.id))
            created += 1
            while alive and time.perf_counter() - alive[0][0] >= 1.0:
                stub.Delete(containers_pb2.DeleteContainerRequest(id=alive.pop(0)[1]), metadata=md)
        for _, container_id in alive:
            stub.Delete(containers_pb2.DeleteContainerRequest(id=container_id), metadata=md)
    finally:
        channel.close()
    return created


def scenario_8(ctx: Context) -> list[Row]:
    """The same churn against a server with usage tracking (defaults) and one with `--usage-tracking false`
    (the harness's own server runs without tracking, so it writes nothing here)."""
    seconds = ctx.plan.usage_churn_seconds
    figures: dict[str, tuple[int, float, float, int]] = {}
    for label, extra in (("tracking", ("--usage-tracking", "true")), ("off", ("--usage-tracking", "false"))):
        ns = ctx.namespace(f"s8-{label}")
        names = []
        for n in range(ctx.plan.usage_churn_images):
            name = f"docker.io/bench/s8-{label}-{n}:latest"
            ctx.factory.put(ns, [(name, unique_manifest(f"{ctx.factory.tag()}-s8-{label}-{n}"))])
            names.append(name)
        server = ServerProcess(
            ctx.address, ctx.work_dir / f"server-s8-{label}.log", extra_args=(*ctx.server.extra_args, *extra)
        )
        with server:
            time.sleep(1.0)  # the first sweep (every image's first-seen) is not the churn's cost
            updates = _Updates(ctx.address, ns)
            time.sleep(0.2)
            server_cpu, containerd_cpu = server.cpu_seconds(), cpu_seconds(ctx.containerd_pid)
            created = _churn(ctx.address, ns, names, seconds)
            server_ms = (server.cpu_seconds() - server_cpu) * 1000
            containerd_ms = (cpu_seconds(ctx.containerd_pid) - containerd_cpu) * 1000
            updates.close()
        figures[label] = (updates.count, server_ms, containerd_ms, created)
        ctx.log(
            f"scenario 8: {label}: {created} containers in {seconds:g}s, {updates.count} label writes, "
            f"server CPU {server_ms:.0f} ms, containerd CPU {containerd_ms:.0f} ms"
        )
    writes, server_ms, containerd_ms, created = figures["tracking"]
    _, off_server_ms, off_containerd_ms, _ = figures["off"]
    minutes = seconds / 60
    images = ctx.plan.usage_churn_images
    # Within the rate limit: each image's last-used at most once per write interval (plus one if the churn
    # straddles an interval boundary), whatever the number of containers.
    allowed = images * (int(seconds // WRITE_INTERVAL_S) + 1)
    return [
        Row(
            8,
            f"label writes per minute, {RATE} containers/s over {images} images for {seconds:g}s",
            "/min",
            writes / minutes,
            target=Target(Goal.VALUE_AT_MOST, allowed / minutes, f"<= {allowed} writes in all (rate limit)"),
            note=f"{writes} writes for {created} containers created and deleted ({2 * created} events)",
        ),
        Row(
            8,
            f"server CPU per second of churn ({RATE} containers/s)",
            "ms/s",
            server_ms / seconds,
            {"--usage-tracking false": off_server_ms / seconds},
            note=f"containerd CPU {containerd_ms / seconds:.0f} ms/s with tracking, "
            f"{off_containerd_ms / seconds:.0f} ms/s without (the churn itself)",
        ),
    ]
