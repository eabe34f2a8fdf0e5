"""ReclaimSpace: free disk by removing unused images least recently used first, through the prune executor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imageremoval.server.cleaning.disk import DiskUsage, disk_usage
from imageremoval.server.cleaning.inventory import Inventory, InventoryImage, InventoryReader
from imageremoval.server.cleaning.prune_execution import (
    ExecutablePlan,
    PlannedRemoval,
    PruneExecutor,
    Removed,
    Skip,
    Summary,
)
from imageremoval.server.cleaning.prune_plan import Planned, SkipReason, make_plan
from imageremoval.server.domain.errors import InvalidArgument, Reason, ReclaimUnavailable
from imageremoval.server.domain.model import Item
from imageremoval.server.domain.policy import RemovalPolicy
from imageremoval.server.domain.selector import Selector
from imageremoval.server.domain.sizes import reclaimable
from imageremoval.server.domain.usage import too_young
from imageremoval.server.telemetry.reclaim_metrics import ReclaimMetrics

_log = logging.getLogger(__name__)
_MAX_ROUNDS = 16  # plan, execute, measure; again only while the measured target is not reached
STOP_TARGET_REACHED = "target reached"
STOP_NOTHING_MORE = "nothing more may go"
STOP_DRY_RUN = "dry run"
STOP_ROUNDS = "round limit"


@dataclass(frozen=True, slots=True)
class ReclaimTarget:
    """Exactly one: bytes to free, or the usage percentage to get below."""

    free_bytes: int = 0
    usage_percent: float = 0.0

    def validate(self) -> None:
        if (self.free_bytes > 0) == (self.usage_percent > 0) or self.free_bytes < 0:
            raise _invalid("set exactly one of target_free_bytes (> 0) and target_usage_percent")
        if self.usage_percent and not 0 < self.usage_percent < 100:
            raise _invalid("target_usage_percent must be between 0 and 100")


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(Reason.INVALID_RECLAIM_TARGET, f"invalid reclaim target: {message}", {"detail": message})


@dataclass(frozen=True, slots=True)
class ReclaimSkip:
    image: InventoryImage
    reason: SkipReason
    detail: str


@dataclass(frozen=True, slots=True)
class ReclaimPlanned:
    planned: Planned


@dataclass(frozen=True, slots=True)
class ReclaimRemoved:
    image_id: str
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class ReclaimSummary:
    removed: int
    skipped: int
    planned_bytes: int
    freed_bytes: int
    target_bytes: int
    stop_reason: str
    before: DiskUsage | None
    after: DiskUsage | None


ReclaimStep = ReclaimSkip | ReclaimPlanned | ReclaimRemoved | ReclaimSummary


def lru_order(images: Sequence[InventoryImage]) -> list[InventoryImage]:
    """Least recently used first: last used (else first seen), then oldest created, then ID."""
    return sorted(images, key=lambda i: (i.usage.reference_ns or 0, i.created_ns, i.id))


class SpaceReclaimer:
    """One reclaim at a time per server (the RPC and the loop share the lock)."""

    def __init__(
        self,
        reader: InventoryReader,
        executor: PruneExecutor,
        policy: RemovalPolicy,
        root: Path | None,
        *,
        min_age_ns: int,
        clock: Callable[[], int] = time.time_ns,
        metrics: ReclaimMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._reader = reader
        self._executor = executor
        self._policy = policy
        self._root = root
        self._min_age_ns = min_age_ns
        self._clock = clock
        self._lock = asyncio.Lock()

    def measure(self) -> DiskUsage | None:
        """Containerd root's filesystem now; None when no root is known or it cannot be read."""
        usage = disk_usage(self._root) if self._root is not None else None
        if usage is not None and self._metrics is not None:
            self._metrics.filesystem(usage.percent / 100.0)
        return usage

    async def reclaim(
        self,
        namespace: str,
        target: ReclaimTarget,
        *,
        dry_run: bool = False,
        identities: Sequence[str] = (),
        trigger: str = "rpc",
    ) -> AsyncIterator[ReclaimStep]:
        """Skips as found, removals as done (or the plan, on a dry run), then one summary; counted."""
        async for step in self._reclaim(namespace, target, dry_run=dry_run, identities=identities):
            if self._metrics is not None and not dry_run:
                self._count(step, trigger, namespace)
            yield step

    def _count(self, step: ReclaimStep, trigger: str, namespace: str) -> None:
        assert self._metrics is not None
        if isinstance(step, ReclaimSkip):
            self._metrics.image(trigger, "skipped", step.reason.value)
        elif isinstance(step, ReclaimRemoved):
            self._metrics.image(trigger, "removed")
        elif isinstance(step, ReclaimSummary):
            self._metrics.run(
                trigger,
                namespace,
                targeted=step.target_bytes,
                planned=step.planned_bytes,
                freed=step.freed_bytes,
                stop=step.stop_reason,
                reached=step.stop_reason == STOP_TARGET_REACHED,
            )

    async def _reclaim(
        self, namespace: str, target: ReclaimTarget, *, dry_run: bool, identities: Sequence[str]
    ) -> AsyncIterator[ReclaimStep]:
        target.validate()
        self._policy.check_namespace(namespace, identities)
        async with self._lock:
            before = self.measure()
            if target.usage_percent and before is None:
                raise ReclaimUnavailable(
                    "cannot measure containerd's root filesystem (set --containerd-root)",
                    {"root": str(self._root or "")},
                )
            wanted = target.free_bytes or (before.over(target.usage_percent) if before else 0)
            reported: set[str] = set()
            removed = skipped = planned_bytes = freed = 0
            stop = STOP_ROUNDS
            for _ in range(_MAX_ROUNDS):
                left = self._left(target, freed)
                if dry_run:
                    left = wanted
                if left <= 0:
                    stop = STOP_TARGET_REACHED
                    break
                inventory = await self._reader.read(namespace)
                candidates, skips = self._classify(inventory)
                for skip in skips:
                    if skip.image.id not in reported:
                        reported.add(skip.image.id)
                        skipped += 1
                        yield skip
                picked = _pick(inventory, candidates, left)
                plan = make_plan(
                    inventory, Selector(all_unused=True), self._clock(), min_age_ns=self._min_age_ns, only=picked
                )
                for staying in plan.skipped:
                    if staying.image.id not in reported:
                        reported.add(staying.image.id)
                        skipped += 1
                        yield ReclaimSkip(staying.image, staying.reason, staying.detail)
                if not plan.images:
                    stop = STOP_NOTHING_MORE
                    break
                if dry_run:
                    for planned in plan.images:
                        yield ReclaimPlanned(planned)
                    planned_bytes = plan.reclaimable_bytes
                    stop = STOP_DRY_RUN
                    break
                executable = ExecutablePlan(
                    namespace=namespace,
                    removals=tuple(
                        PlannedRemoval(p.image.id, frozenset((r.name, r.image_id) for r in p.image.records))
                        for p in plan.images
                    ),
                    resources=tuple((r.node, r.size, r.holders) for r in plan.resources),
                )
                round_removed = 0
                async for step in self._executor.execute(executable, identities):
                    if isinstance(step, Removed):
                        round_removed += 1
                        yield ReclaimRemoved(plan.images[step.index].image.id, step.items)
                    elif isinstance(step, Skip):
                        image = plan.images[step.index].image
                        reported.add(image.id)
                        skipped += 1
                        yield ReclaimSkip(image, step.reason, step.detail)
                    elif isinstance(step, Summary):
                        planned_bytes += step.planned_bytes
                        freed += step.freed_bytes
                removed += round_removed
                if round_removed == 0:
                    stop = STOP_NOTHING_MORE
                    break
            yield ReclaimSummary(
                removed=removed,
                skipped=skipped,
                planned_bytes=planned_bytes,
                freed_bytes=freed,
                target_bytes=wanted,
                stop_reason=stop,
                before=before,
                after=self.measure(),
            )

    def _left(self, target: ReclaimTarget, freed: int) -> int:
        if target.free_bytes:
            return target.free_bytes - freed
        now = self.measure()
        return now.over(target.usage_percent) if now is not None else 0

    def _classify(self, inventory: Inventory) -> tuple[list[InventoryImage], list[ReclaimSkip]]:
        """Candidates (unused, unprotected, old enough) in LRU order, and the skips with their reasons."""
        now = self._clock()
        candidates: list[InventoryImage] = []
        skips: list[ReclaimSkip] = []
        for image in inventory.images:
            if image.protected_rule:
                skips.append(ReclaimSkip(image, SkipReason.PROTECTED, f"protected ({image.protected_rule})"))
            elif image.in_use:
                detail = f"used by {image.running} running and {image.stopped} stopped containers"
                skips.append(ReclaimSkip(image, SkipReason.IN_USE, detail))
            elif too_young(image.usage, image.newest_created_ns, now, self._min_age_ns):
                basis = image.usage.basis.value.lower().replace("_", " ")
                skips.append(ReclaimSkip(image, SkipReason.TOO_YOUNG, f"younger than the minimum age ({basis})"))
            else:
                candidates.append(image)
        return lru_order(candidates), skips


def _pick(inventory: Inventory, ordered: Sequence[InventoryImage], wanted: int) -> list[str]:
    """The shortest LRU prefix whose removal frees at least `wanted` bytes (all of them if none does).

    What a prefix frees only grows with the prefix, so a binary search needs log2(n) graph walks, not n.
    """
    ids = [i.id for i in ordered]

    def frees(count: int) -> int:
        return inventory.graph.size(reclaimable(inventory.graph, inventory.closures, ids[:count]))

    low, high = 1, len(ids)
    if not ids or frees(high) < wanted:
        return ids
    while low < high:
        middle = (low + high) // 2
        if frees(middle) >= wanted:
            high = middle
        else:
            low = middle + 1
    return ids[:low]
