"""The library's health servicer, whose Watch streams end when the server stops, so they never hold SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer


class DrainingHealthServicer(HealthServicer):  # type: ignore[misc]  # the library ships no types
    """Check and Watch as the library serves them; `end_watches` closes every open Watch with OK.

    Watchers have already been sent NOT_SERVING by then (shutdown flips health first), so they know why.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ending = asyncio.Event()

    async def Watch(  # noqa: N802 - the name is the RPC's
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> None:
        if self._ending.is_set():
            return
        watch = asyncio.ensure_future(super().Watch(request, context))
        ending = asyncio.ensure_future(self._ending.wait())
        try:
            await asyncio.wait((watch, ending), return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                watch.result()  # the library's own ending (an abort, a write to a gone client) as it was
        finally:
            for task in (watch, ending):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def end_watches(self) -> None:
        """End every open Watch stream now, and any started later at once."""
        self._ending.set()
