"""Plain domain records for what containerd stores, so the removal logic never sees protobuf types."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

MEDIA_INDEX = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
MEDIA_MANIFEST = frozenset(
    {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}
)
LABEL_PARENT = "org.mobyproject.image.parent"
LABEL_GC_SNAPSHOT_PREFIX = "containerd.io/gc.ref.snapshot."
LABEL_GC_CONTENT_PREFIX = "containerd.io/gc.ref.content."


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a record or a blob points to."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A containerd image record: a name pointing at a target descriptor."""

    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)
    created_ns: int = 0  # nanoseconds since the epoch, as containerd recorded it (0: unknown)

    @property
    def image_id(self) -> str:
        """Docker's image ID: the digest of the record's target."""
        return self.target.digest


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """A blob the content store has, with its labels (garbage-collection references live there)."""

    digest: str
    size: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A containerd container: the image name it was created from and its root filesystem snapshot."""

    id: str
    image: str
    snapshotter: str
    snapshot_key: str
    labels: Mapping[str, str] = field(default_factory=dict)


class SnapshotKind(enum.Enum):
    """A snapshot's kind: committed ones are layers (or init layers); active and view ones are mounted."""

    ACTIVE = "active"  # a writable root filesystem (a container's, or a build step's)
    VIEW = "view"  # a read-only mount of a committed snapshot
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot of a snapshotter: its key (or committed name), its parent and its kind."""

    name: str
    parent: str
    kind: SnapshotKind
    snapshotter: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def committed(self) -> bool:
        return self.kind is SnapshotKind.COMMITTED


@dataclass(frozen=True, slots=True)
class LeaseResource:
    """Something a lease holds: type `content` (id: digest), `snapshots/<snapshotter>` (id: key) or others."""

    lease: str
    type: str
    id: str


class TaskState(enum.Enum):
    """Whether a container's task would make the image's removal a hard conflict."""

    RUNNING = "running"  # running, paused or pausing: a hard conflict
    STOPPED = "stopped"  # created, stopped, or no task at all: a soft conflict


class ItemKind(enum.Enum):
    """Docker's two kinds of delete-response item."""

    UNTAGGED = "untagged"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Item:
    """One thing the removal did, in order."""

    kind: ItemKind
    value: str
    image_id: str  # the image the name pointed to (for events)
