"""Execute a prune plan exactly: each image through RemoveImage's own path, one collection, freed bytes measured."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from imageremoval.server.cleaning.prune_plan import SkipReason
from imageremoval.server.domain.errors import (
    ImageChanged,
    ImageConflict,
    ImageNotFound,
    ImageProtected,
    RemovalError,
)
from imageremoval.server.domain.model import LABEL_PARENT, Item
from imageremoval.server.domain.policy import RemovalPolicy
from imageremoval.server.domain.sizes import blob_node, parse_node, snapshot_node
from imageremoval.server.domain.store import ImageStores
from imageremoval.server.removal.service import ImageRemover, RemovalRequest

_log = logging.getLogger(__name__)
WINDOW = 4  # removals in flight: containerd serialises its writes, this overlaps our work with its fsyncs


@dataclass(frozen=True, slots=True)
class PlannedRemoval:
    """One planned image as the plan saw it: its ID and every (record name, target digest)."""

    image_id: str
    records: frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ExecutablePlan:
    """What execution needs of a verified plan."""

    namespace: str
    removals: tuple[PlannedRemoval, ...]
    resources: tuple[tuple[str, int, tuple[int, ...]], ...]  # (node, bytes, indexes of the holders)


@dataclass(frozen=True, slots=True)
class Removed:
    index: int
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Skip:
    index: int
    reason: SkipReason
    detail: str


@dataclass(frozen=True, slots=True)
class Summary:
    removed: int
    skipped: int
    planned_bytes: int
    freed_bytes: int


Progress = Removed | Skip | Summary


class PruneExecutor:
    """Removes a plan's images one by one with RemoveImage's rules, then collects garbage once."""

    def __init__(self, stores: ImageStores, remover: ImageRemover, policy: RemovalPolicy) -> None:
        self._stores = stores
        self._remover = remover
        self._policy = policy

    async def execute(self, plan: ExecutablePlan, identities: Sequence[str] = ()) -> AsyncIterator[Progress]:
        """Stream one Removed or Skip per planned image, in plan order, then a Summary.

        Cancelling the consumer stops between images: a removal already started finishes (RemoveImage's own
        guarantee), nothing further is started, and no summary is sent.
        """
        namespace = plan.namespace
        self._policy.check_namespace(namespace, identities)
        records = await self._stores.scope(namespace).images()
        children: dict[str, set[str]] = {}
        for record in records:
            if record.labels.get(LABEL_PARENT):
                children.setdefault(record.labels[LABEL_PARENT], set()).add(record.image_id)
        removed: set[int] = set()
        skipped = 0
        async for index, outcome in self._outcomes(plan, children, identities):
            if isinstance(outcome, Skip):
                skipped += 1
                yield Skip(index, outcome.reason, outcome.detail)
            else:
                removed.add(index)
                yield Removed(index, outcome)
        if removed:
            await self._collect(namespace)
        counted = [(node, size) for node, size, holders in plan.resources if holders and set(holders) <= removed]
        planned_bytes = sum(size for _, size in counted)
        freed = await self._measure(namespace, [node for node, _ in counted]) if counted else set()
        yield Summary(
            removed=len(removed),
            skipped=skipped,
            planned_bytes=planned_bytes,
            freed_bytes=sum(size for node, size in counted if node in freed),
        )

    async def _outcomes(
        self, plan: ExecutablePlan, children: dict[str, set[str]], identities: Sequence[str]
    ) -> AsyncIterator[tuple[int, tuple[Item, ...] | Skip]]:
        """Each planned image's outcome, in plan order, with up to WINDOW removals in flight.

        An image starts only once its planned children have finished: whether it is the parent of an image
        that stays depends on them. Cancelled, nothing new starts; removals in flight finish or stop at their
        own next checkpoint (RemoveImage's guarantee).
        """
        removals = plan.removals
        position = {p.image_id: i for i, p in enumerate(removals)}
        gone: set[str] = set()
        done: set[int] = set()
        pending: dict[int, asyncio.Task[tuple[Item, ...] | Skip]] = {}
        ready: dict[int, tuple[Item, ...] | Skip] = {}

        def start(index: int) -> None:
            planned = removals[index]
            staying = children.get(planned.image_id, set()) - gone
            if staying:
                ready[index] = Skip(index, SkipReason.PARENT_OF_KEPT, f"image {sorted(staying)[0]} builds on it")
            else:
                pending[index] = asyncio.create_task(self._remove_one(plan.namespace, planned, identities))

        def startable(index: int) -> bool:
            kids = (position[c] for c in children.get(removals[index].image_id, ()) if c in position)
            return all(k in done for k in kids)

        following = 0
        try:
            for index in range(len(removals)):
                if index >= following:
                    start(index)
                    following = index + 1
                while following < len(removals) and len(pending) < WINDOW and startable(following):
                    start(following)
                    following += 1
                outcome = ready.pop(index) if index in ready else await pending.pop(index)
                done.add(index)
                if not isinstance(outcome, Skip):
                    gone.add(removals[index].image_id)
                yield index, outcome
        finally:
            for task in pending.values():
                task.cancel()
            await asyncio.gather(*pending.values(), return_exceptions=True)

    async def _remove_one(
        self, namespace: str, planned: PlannedRemoval, identities: Sequence[str]
    ) -> tuple[Item, ...] | Skip:
        """RemoveImage by ID, compared against the plan's records; refusals become skip reasons."""
        request = RemovalRequest(
            reference=planned.image_id,
            namespace=namespace,
            prune=False,  # exactly the planned images: a parent goes only if the plan has it
            async_gc=True,  # one collection at the end, not one per image
            identities=tuple(identities),
            expected_records=planned.records,
            every_name=True,
        )
        try:
            return tuple(await self._remover.remove(request))
        except (ImageChanged, ImageNotFound) as error:
            return Skip(-1, SkipReason.CHANGED, error.message)
        except ImageConflict as error:
            return Skip(-1, SkipReason.IN_USE, error.message)
        except ImageProtected as error:
            return Skip(-1, SkipReason.PROTECTED, error.message)
        except RemovalError as error:
            _log.warning("prune: removing %s failed: %s", planned.image_id, error.message)
            return Skip(-1, SkipReason.FAILED, f"{error.reason.value}: {error.message}")

    async def _collect(self, namespace: str) -> None:
        """The one synchronous garbage collection of the execution (deleting a lease with sync runs one)."""
        try:
            await self._stores.scope(namespace).collect_garbage()
        except RemovalError as exc:
            _log.warning("prune: garbage collection failed: %s", exc.message)

    async def _measure(self, namespace: str, nodes: Sequence[str]) -> set[str]:
        """Which of these blobs and snapshots are really gone: one content listing, one per snapshotter.

        If containerd cannot be asked, nothing is reported as freed (never a guess).
        """
        present: set[str] = set()
        store = self._stores.scope(namespace)
        try:
            present.update(blob_node(info.digest) for info in await store.all_content())
            for snapshotter in sorted({parse_node(n)[1] for n in nodes} - {""}):
                listing = await store.snapshots(snapshotter)
                present.update(snapshot_node(s.snapshotter, s.name) for s in listing)
        except RemovalError as exc:
            _log.warning("prune: cannot measure what was freed: %s", exc.message)
            return set()
        return {n for n in nodes if n not in present}
