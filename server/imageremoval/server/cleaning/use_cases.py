"""The node-cleaning use cases behind ListImages and PlanPrune: read the inventory, select, page, plan."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from imageremoval.server.cleaning.inventory import InventoryImage, InventoryReader
from imageremoval.server.cleaning.prune_plan import PrunePlan, make_plan
from imageremoval.server.domain.policy import RemovalPolicy
from imageremoval.server.domain.selector import Selector, matches


class NodeCleaning:
    """Listing and planning; both change nothing, so both are always safe to retry."""

    def __init__(
        self,
        reader: InventoryReader,
        policy: RemovalPolicy,
        clock: Callable[[], int] = time.time_ns,
        *,
        min_age_ns: int = 0,
    ) -> None:
        self._reader = reader
        self._policy = policy
        self._clock = clock
        self._min_age_ns = min_age_ns

    async def list_images(
        self,
        namespace: str,
        selector: Selector | None,
        *,
        size: int,
        after: tuple[int, str] | None,
        identities: Sequence[str] = (),
    ) -> tuple[list[InventoryImage], InventoryImage | None]:
        """One page, newest first (ties by ID), and the last image of it when another page follows."""
        self._policy.check_namespace(namespace, identities)
        inventory = await self._reader.read(namespace)
        now = self._clock()
        chosen = [
            i
            for i in inventory.images
            if selector is None or matches(i, selector, now_ns=now, min_age_ns=self._min_age_ns)
        ]
        chosen.sort(key=_order)
        if after is not None:
            start = (-after[0], after[1])
            chosen = [i for i in chosen if _order(i) > start]
        page = chosen[:size]
        return page, (page[-1] if len(chosen) > size else None)

    async def plan(self, namespace: str, selector: Selector, *, identities: Sequence[str] = ()) -> PrunePlan:
        """What pruning with this selector would remove, keep, and free."""
        self._policy.check_namespace(namespace, identities)
        inventory = await self._reader.read(namespace)
        return make_plan(inventory, selector, self._clock(), min_age_ns=self._min_age_ns)


def _order(image: InventoryImage) -> tuple[int, str]:
    return (-image.created_ns, image.id)
