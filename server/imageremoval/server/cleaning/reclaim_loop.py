"""The optional reclaim loop: above the high mark on containerd's root filesystem, reclaim down to the low mark."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from imageremoval.server.cleaning.space_reclaim import (
    STOP_NOTHING_MORE,
    STOP_TARGET_REACHED,
    ReclaimSummary,
    ReclaimTarget,
    SpaceReclaimer,
)
from imageremoval.server.config import LoopSettings
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.store import ImageStores

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopRun:
    """One run of the loop, as logged and measured."""

    usage_before: float
    usage_after: float
    removed: int
    skipped: int
    freed_bytes: int
    target_bytes: int
    stop_reason: str


class ReclaimLoop:
    """Checks every interval; one reclaim at a time (shared with the RPC); health is never touched."""

    def __init__(
        self,
        stores: ImageStores,
        reclaimer: SpaceReclaimer,
        settings: LoopSettings,
        on_run: Callable[[LoopRun], None] | None = None,
    ) -> None:
        self._stores = stores
        self._reclaimer = reclaimer
        self._settings = settings
        self._on_run = on_run
        self._task: asyncio.Task[None] | None = None
        self.runs: list[LoopRun] = []

    def start(self) -> None:
        if self._settings.enabled and self._task is None:
            self._task = asyncio.create_task(self._forever(), name="reclaim-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _forever(self) -> None:
        while True:
            try:
                await self.check()
            except RemovalError as exc:
                _log.warning("reclaim loop: %s", exc.message)
            except Exception:
                _log.exception("reclaim loop failed")
            await asyncio.sleep(self._settings.interval_s)

    async def check(self) -> LoopRun | None:
        """Reclaim if usage is at or above the high mark: namespaces in turn until below the low mark."""
        usage = self._reclaimer.measure()
        if usage is None or usage.percent < self._settings.high_percent:
            return None
        target = ReclaimTarget(usage_percent=self._settings.low_percent)
        removed = skipped = freed = 0
        stop = STOP_NOTHING_MORE
        for namespace in await self._stores.namespaces():
            summary: ReclaimSummary | None = None
            async for step in self._reclaimer.reclaim(namespace, target, trigger="loop"):
                if isinstance(step, ReclaimSummary):
                    summary = step
            if summary is None:
                continue
            removed, skipped, freed = removed + summary.removed, skipped + summary.skipped, freed + summary.freed_bytes
            if summary.stop_reason == STOP_TARGET_REACHED:
                stop = STOP_TARGET_REACHED
                break
        after = self._reclaimer.measure()
        run = LoopRun(
            usage_before=usage.percent,
            usage_after=after.percent if after else 0.0,
            removed=removed,
            skipped=skipped,
            freed_bytes=freed,
            target_bytes=usage.over(self._settings.low_percent),
            stop_reason=stop,
        )
        self.runs.append(run)
        _log.info(
            "reclaim: usage %.1f%% >= %.1f%%: removed %d images, freed %d bytes, usage now %.1f%%; stopped: %s",
            run.usage_before,
            self._settings.high_percent,
            run.removed,
            run.freed_bytes,
            run.usage_after,
            run.stop_reason,
            extra={
                "usageBefore": run.usage_before,
                "usageAfter": run.usage_after,
                "imagesRemoved": run.removed,
                "imagesSkipped": run.skipped,
                "freedBytes": run.freed_bytes,
                "targetBytes": run.target_bytes,
                "stopReason": run.stop_reason,
            },
        )
        if self._on_run is not None:
            self._on_run(run)
        return run
