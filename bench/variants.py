"""The things compared: our server through its client, raw containerd from Python, and `ctr`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from imageremoval.client import AsyncImageRemovalClient, ImageRemovalClient
from imageremoval.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc

from .content import BenchImage
from .env import BenchError

NAMESPACE_HEADER = "containerd-namespace"

Remove = Callable[[BenchImage], None]
AsyncRemove = Callable[[BenchImage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Variant:
    """One side of a comparison: a label and how it removes one image."""

    label: str
    remove: Remove


def _md(namespace: str) -> tuple[tuple[str, str], ...]:
    return ((NAMESPACE_HEADER, namespace),)


def ours(client: ImageRemovalClient, namespace: str, *, by_id: bool = False, async_gc: bool = False) -> Remove:
    """RemoveImage through our server, by name (or short ID); it must report the image deleted."""

    def remove(image: BenchImage) -> None:
        items = client.remove(image.short_id if by_id else image.name, namespace=namespace, async_gc=async_gc)
        if not any(item.kind == "deleted" for item in items):
            raise BenchError(f"our server did not delete {image.name}: {items}")

    return remove


class RawImages:
    """containerd's Images service from Python, on its own channel: the floor we compare against."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.images = images_pb2_grpc.ImagesStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def delete(self, namespace: str, *, sync: bool) -> Remove:
        """Images.Delete(name, sync)."""

        def remove(image: BenchImage) -> None:
            self.images.Delete(images_pb2.DeleteImageRequest(name=image.name, sync=sync), metadata=_md(namespace))

        return remove

    def list_ms(self, namespace: str, filters: Sequence[str], times: int) -> list[float]:
        """How long one filtered Images.List takes (ms), `times` over: what a scan of the namespace costs."""
        samples: list[float] = []
        for _ in range(times):
            started = time.perf_counter()
            self.images.List(images_pb2.ListImagesRequest(filters=list(filters)), metadata=_md(namespace))
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    def list_and_delete(self, namespace: str) -> Remove:
        """What a short ID costs containerd itself: a filtered list, then a delete per record found."""

        def remove(image: BenchImage) -> None:
            reply = self.images.List(
                images_pb2.ListImagesRequest(filters=[f'target.digest~="^sha256:{image.short_id}"']),
                metadata=_md(namespace),
            )
            names = [record.name for record in reply.images]
            if not names:
                raise BenchError(f"containerd's filtered list found nothing for {image.short_id}")
            for position, name in enumerate(names):
                request = images_pb2.DeleteImageRequest(name=name, sync=position == len(names) - 1)
                self.images.Delete(request, metadata=_md(namespace))

        return remove


def ctr_rm(address: str, namespace: str) -> Remove:
    """`ctr images rm --sync NAME`: one process per image, as a script would run it."""

    def remove(image: BenchImage) -> None:
        done = subprocess.run(
            ["ctr", "--address", address, "-n", namespace, "images", "rm", "--sync", image.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"ctr images rm failed: {done.stderr.strip()}")

    return remove


def interleave(variants: Sequence[Variant], images: Mapping[str, Sequence[BenchImage]]) -> dict[str, list[float]]:
    """Remove image i of every variant before image i+1 of any, rotating who goes first; ms per removal."""
    samples: dict[str, list[float]] = {variant.label: [] for variant in variants}
    count = min(len(images[variant.label]) for variant in variants)
    for position in range(count):
        shift = position % len(variants)
        for variant in (*variants[shift:], *variants[:shift]):
            started = time.perf_counter()
            variant.remove(images[variant.label][position])
            samples[variant.label].append((time.perf_counter() - started) * 1000)
    return samples


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Removals by several concurrent clients: wall time and each removal's latency (ms)."""

    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        """Removals per second."""
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


async def _drain(queue: asyncio.Queue[BenchImage], remove: AsyncRemove, latencies: list[float]) -> None:
    while True:
        try:
            image = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        started = time.perf_counter()
        await remove(image)
        latencies.append((time.perf_counter() - started) * 1000)


async def _load(removers: Sequence[AsyncRemove], images: Sequence[BenchImage]) -> LoadResult:
    queue: asyncio.Queue[BenchImage] = asyncio.Queue()
    for image in images:
        queue.put_nowait(image)
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_drain(queue, remove, latencies) for remove in removers))
    return LoadResult(time.perf_counter() - started, latencies)


async def ours_load(
    target: str, namespace: str, images: Sequence[BenchImage], clients: int, *, async_gc: bool = False
) -> LoadResult:
    """`clients` AsyncImageRemovalClients, each on its own connection, sharing the images."""
    opened = [AsyncImageRemovalClient(target) for _ in range(clients)]
    try:
        # Connect before the clock starts, with a call that changes nothing.
        await asyncio.gather(*(c.remove("bench/warm-up:none", namespace=namespace, allow_missing=True) for c in opened))

        def remover(client: AsyncImageRemovalClient) -> AsyncRemove:
            async def remove(image: BenchImage) -> None:
                items = await client.remove(image.name, namespace=namespace, async_gc=async_gc)
                if not any(item.kind == "deleted" for item in items):
                    raise BenchError(f"our server did not delete {image.name}: {items}")

            return remove

        return await _load([remover(c) for c in opened], images)
    finally:
        await asyncio.gather(*(c.close() for c in opened))


async def raw_load(
    address: str, namespace: str, images: Sequence[BenchImage], clients: int, *, sync: bool = True
) -> LoadResult:
    """`clients` raw Images.Delete callers, each on its own connection to containerd."""
    channels = [grpc.aio.insecure_channel(f"unix://{address}") for _ in range(clients)]
    try:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))

        def remover(channel: grpc.aio.Channel) -> AsyncRemove:
            stub = images_pb2_grpc.ImagesStub(channel)

            async def remove(image: BenchImage) -> None:
                request = images_pb2.DeleteImageRequest(name=image.name, sync=sync)
                await stub.Delete(request, metadata=_md(namespace))

            return remove

        return await _load([remover(c) for c in channels], images)
    finally:
        await asyncio.gather(*(channel.close(None) for channel in channels))
