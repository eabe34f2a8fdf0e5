"""The prune plan: what a selector would remove, what it keeps and why, and exactly what removing it frees."""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from imageremoval.server.cleaning.inventory import Inventory, InventoryImage
from imageremoval.server.domain.selector import Selector, kept_latest, matches
from imageremoval.server.domain.sizes import reclaimable


class SkipReason(enum.Enum):
    """Why a chosen image stays (the API's SkipReason)."""

    IN_USE = "IN_USE"
    PROTECTED = "PROTECTED"
    KEPT = "KEPT"
    PARENT_OF_KEPT = "PARENT_OF_KEPT"
    CHANGED = "CHANGED"
    FAILED = "FAILED"
    TOO_YOUNG = "TOO_YOUNG"


@dataclass(frozen=True, slots=True)
class Planned:
    """An image the plan removes, and why it was chosen."""

    image: InventoryImage
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """An image the selector chose that stays."""

    image: InventoryImage
    reason: SkipReason
    detail: str


@dataclass(frozen=True, slots=True)
class PlannedResource:
    """A blob or snapshot the plan frees, its size, and the planned images (indexes) that hold it."""

    node: str
    size: int
    holders: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """The whole plan, in execution order (children before their parents)."""

    namespace: str
    images: tuple[Planned, ...]
    skipped: tuple[Skipped, ...]
    resources: tuple[PlannedResource, ...]
    created_ns: int

    @property
    def reclaimable_bytes(self) -> int:
        return sum(r.size for r in self.resources)


def make_plan(
    inventory: Inventory,
    selector: Selector,
    now_ns: int,
    *,
    min_age_ns: int = 0,
    only: Collection[str] | None = None,
) -> PrunePlan:
    """Choose, skip (protected, in use, kept, parent of a staying image), order, and size the plan; `only`
    limits it to these image IDs (ReclaimSpace's choice)."""
    chosen = [
        i
        for i in inventory.images
        if (only is None or i.id in only) and matches(i, selector, now_ns=now_ns, min_age_ns=min_age_ns)
    ]
    kept = kept_latest(inventory.images, selector.keep_latest)
    skipped: list[Skipped] = []
    planned: dict[str, InventoryImage] = {}
    for image in chosen:
        if image.protected_rule:
            skipped.append(Skipped(image, SkipReason.PROTECTED, f"protected ({image.protected_rule})"))
        elif image.in_use:
            skipped.append(
                Skipped(
                    image,
                    SkipReason.IN_USE,
                    f"used by {image.running} running and {image.stopped} stopped containers",
                )
            )
        elif image.id in kept:
            skipped.append(
                Skipped(image, SkipReason.KEPT, f"one of its repository's {selector.keep_latest} newest images")
            )
        else:
            planned[image.id] = image
    # A parent any staying image builds on stays too, transitively (Docker never deletes a needed parent).
    changed = True
    while changed:
        changed = False
        staying_parents = {i.parent for i in inventory.images if i.id not in planned and i.parent}
        for parent_id in staying_parents & planned.keys():
            skipped.append(
                Skipped(planned.pop(parent_id), SkipReason.PARENT_OF_KEPT, "an image that stays builds on it")
            )
            changed = True
    ordered = _children_first(list(planned.values()))
    reason = selector.describe()
    freed = reclaimable(inventory.graph, inventory.closures, [i.id for i in ordered])
    resources = tuple(
        PlannedResource(node=node, size=inventory.graph.sizes.get(node, 0), holders=tuple(holders))
        for node, holders in sorted(freed.items())
    )
    return PrunePlan(
        namespace=inventory.namespace,
        images=tuple(Planned(i, reason) for i in ordered),
        skipped=tuple(skipped),
        resources=resources,
        created_ns=now_ns,
    )


def _children_first(images: Sequence[InventoryImage]) -> list[InventoryImage]:
    """Order so that an image comes before the planned image it builds on (its parent); otherwise oldest first."""
    remaining = {i.id: i for i in images}
    ordered: list[InventoryImage] = []
    while remaining:
        parents = {i.parent for i in remaining.values()}
        leaves = sorted((i for i in remaining.values() if i.id not in parents), key=lambda i: (i.created_ns, i.id))
        if not leaves:  # a parent cycle (corrupt labels): break it deterministically
            leaves = [min(remaining.values(), key=lambda i: (i.created_ns, i.id))]
        for image in leaves:
            ordered.append(image)
            del remaining[image.id]
    return ordered
