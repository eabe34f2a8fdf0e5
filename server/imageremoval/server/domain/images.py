"""A namespace's images as a node owner sees them: the value types an inventory read produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.platforms import PlatformSpec
from imageremoval.server.domain.sizes import ImageSizes, ResourceGraph
from imageremoval.server.domain.usage import Usage


@dataclass(frozen=True, slots=True)
class InventoryImage:
    """One image: every record with the same target, and what a user needs to decide about it."""

    id: str
    records: tuple[ImageRecord, ...]
    names: tuple[str, ...]  # familiar, sorted
    created_ns: int  # its oldest record's creation, nanoseconds since the epoch
    dangling: bool
    labels: Mapping[str, str]
    platforms: tuple[PlatformSpec, ...]
    running: int
    stopped: int
    protected_rule: str
    sizes: ImageSizes
    parent: str  # org.mobyproject.image.parent of its records ("" if none)
    usage: Usage = field(default_factory=Usage)
    users: tuple[str, ...] = ()  # IDs of the containers using it

    @property
    def newest_created_ns(self) -> int:
        """Its newest record's creation: a re-tag or a fresh pull is young whatever the image's age."""
        return max((r.created_ns for r in self.records), default=0)

    @property
    def in_use(self) -> bool:
        return self.running + self.stopped > 0


@dataclass(slots=True)
class Inventory:
    """Everything one listing read, so a plan can compute what removing a set of images frees."""

    namespace: str
    images: list[InventoryImage]
    graph: ResourceGraph
    closures: dict[str, set[str]]
