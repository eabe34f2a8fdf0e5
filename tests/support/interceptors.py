"""Client interceptors on the server's channel to containerd: record its calls, slow them, or act between."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import grpc

from imageremoval.gen.containerd.services.images.v1 import images_pb2


def method_of(details: Any) -> str:
    return details.method.decode() if isinstance(details.method, bytes) else str(details.method)


class RecordingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Keeps every unary request sent to containerd, as containerd receives it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls.append((method_of(details), request))
        return await continuation(details, request)

    def deletes(self) -> list[images_pb2.DeleteImageRequest]:
        return [r for m, r in self.calls if m.endswith("/containerd.services.images.v1.Images/Delete")]

    def lease_deletes(self) -> list[Any]:
        return [r for m, r in self.calls if m.endswith("/containerd.services.leases.v1.Leases/Delete")]


class SlowDeletes(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Makes each containerd image delete take a while, so a removal is in flight long enough to act on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if method_of(details).endswith(".Images/Delete"):
            self.started.set()
            await asyncio.sleep(self.seconds)
        return await continuation(details, request)


class BeforeReads(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Runs `hook` before every blob read: another writer acts while the image's content is walked (after the
    reference was resolved, before anything is changed)."""

    def __init__(self) -> None:
        self.hook: Callable[[], None] | None = None

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        if self.hook is not None and method_of(details).endswith("/containerd.services.content.v1.Content/Read"):
            self.hook()
        return await continuation(details, request)
