"""The domain's port to containerd: questions in the removal's own words, for one namespace and one deadline.

The use cases in removal/ and cleaning/ (resolve, the walk, container users, delete, parents, platform
removal, snapshot release, the inventory) ask these, and hand what they read to the pure rules of the domain
(Docker's decision table, conflicts, platforms). The adapter (`imageremoval.server.containerd`) answers
them and alone knows filter syntax, the namespace header and how the deadline bounds each call. A fake
implementing the same Protocol unit-tests the rules without a daemon.

Absence is an answer (None, [] or False), not an error. Failures to ask are RemovalErrors
(ContainerdUnavailable, DeadlineExceeded, ContainerdFailed); a change refused because the thing is gone or
already there raises NotFoundInContainerd or AlreadyExistsInContainerd.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from typing import Protocol

from imageremoval.server.domain.model import (
    ContainerRecord,
    ContentInfo,
    ImageRecord,
    Item,
    LeaseResource,
    SnapshotInfo,
    TaskState,
)


@dataclasses.dataclass(slots=True)
class Hold:
    """A lease held for a block; set keep to leave it to its expiry instead of deleting it at the end."""

    lease_id: str
    keep: bool = False


class ImageStore(Protocol):
    """One namespace of containerd, every call bounded by one deadline (the caller's, or none but ours)."""

    @property
    def namespace(self) -> str:
        """The namespace every question is about."""
        ...

    def unbounded(self) -> ImageStore:
        """The same namespace without the caller's deadline: a removal that has started changing things runs to
        its end, bounded only by the adapter's own call timeout."""
        ...

    # Image records

    async def image(self, name: str) -> ImageRecord | None:
        """The record with exactly this name; None if there is none."""
        ...

    async def images(self) -> list[ImageRecord]:
        """Every record of the namespace."""
        ...

    async def records_of(self, image_id: str) -> list[ImageRecord]:
        """Every record whose target is this digest (the image's names, dangling record included)."""
        ...

    async def image_and_children(self, image_id: str) -> list[ImageRecord]:
        """In one read: the records of this image and those of the images whose parent label names it."""
        ...

    async def records_by_id_prefix(self, hex_prefix: str, lookalike_name: str) -> list[ImageRecord]:
        """In one read: records whose target digest starts with `sha256:<hex_prefix>`, and the record named
        `lookalike_name` (the name a short hex string also is)."""
        ...

    async def records_named(self, names: Collection[str]) -> list[ImageRecord]:
        """The records with these names (absent names are left out)."""
        ...

    async def create_image(self, record: ImageRecord) -> None:
        """Create a record; AlreadyExistsInContainerd if the name is taken."""
        ...

    async def delete_image(self, record: ImageRecord, *, sync: bool) -> None:
        """Delete the record if it still points at its target (containerd 1.7+ checks; 1.6 deletes the name);
        NotFoundInContainerd if it is gone or points elsewhere. `sync` waits for one garbage collection."""
        ...

    async def set_image_labels(self, record: ImageRecord, labels: Mapping[str, str]) -> None:
        """Set exactly these labels of one record (target, other labels and creation time unchanged);
        NotFoundInContainerd if the record is gone."""
        ...

    async def await_image(self, name: str, *, wait_seconds: float) -> ImageRecord | None:
        """Like `image`, but waits up to wait_seconds for containerd to answer again (how a change whose answer
        was lost is read back); not bounded by the caller's deadline."""
        ...

    # Content

    async def content(self, digest: str) -> ContentInfo | None:
        """A blob's size and labels; None if the content store lacks it."""
        ...

    async def await_content(self, digest: str, *, wait_seconds: float) -> ContentInfo | None:
        """Like `content`, but waits up to wait_seconds for containerd to answer again."""
        ...

    async def all_content(self) -> list[ContentInfo]:
        """Every blob of the namespace."""
        ...

    async def read_blob(self, digest: str) -> bytes | None:
        """A whole small blob (index, manifest, config); None if absent. A blob too large to be metadata raises
        ContainerdFailed with metadata tooLarge=true."""
        ...

    async def config_in_use(self, config: str) -> bool:
        """Whether any manifest still names this config (its garbage-collection reference to it)."""
        ...

    async def set_content_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        """Set, or (with an empty value) remove, exactly these labels of a blob; NotFoundInContainerd if gone."""
        ...

    # Containers, tasks and snapshots

    async def containers(self) -> list[ContainerRecord]:
        """Every container record of the namespace."""
        ...

    async def task_states(self) -> dict[str, TaskState]:
        """The state of every task, by container ID (no entry: no task)."""
        ...

    async def snapshots(self, snapshotter: str) -> list[SnapshotInfo]:
        """Every snapshot of one snapshotter (an unknown kind counts as active: mounted)."""
        ...

    async def active_snapshots(self, snapshotter: str) -> dict[str, str]:
        """Active (writable) snapshots, key -> parent: root filesystems, also one prepared for a container not
        created yet, and layers being unpacked."""
        ...

    async def snapshot_usage(self, snapshotter: str, key: str) -> int:
        """The bytes one snapshot's own layer uses on disk."""
        ...

    # Leases and garbage collection

    async def lease_resources(self) -> list[LeaseResource]:
        """Every resource every lease of the namespace holds."""
        ...

    async def hold(self, digest: str) -> Hold:
        """Hold a blob, and through its garbage-collection references everything it names, under a new lease
        of ours (which expires by itself) until `release`."""
        ...

    async def release(self, hold: Hold, *, collect: bool) -> None:
        """Delete the hold's lease, waiting for one garbage collection when `collect`; nothing when `keep` is
        set (it then expires by itself). Never raises."""
        ...

    async def collect_garbage(self) -> None:
        """Run one garbage collection and wait for it."""
        ...


class ImageStores(Protocol):
    """Where request-scoped stores come from (the composition root passes the containerd adapter)."""

    def scope(self, namespace: str, *, deadline: float | None = None) -> ImageStore:
        """The store of one namespace; `deadline` (time.monotonic()) bounds every call, None: our timeout only."""
        ...

    async def namespaces(self) -> list[str]:
        """Every namespace containerd knows."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class StoreEvent:
    """One event of containerd's stream, decoded: what happened to which container or image, where."""

    namespace: str
    topic: str  # containerd's topic, e.g. "/containers/create", "/tasks/exit", "/images/create"
    container: str = ""  # the container an event about a container or its task names
    image: str = ""  # the image name a container was created from, or the name of a created image record
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)  # a created image record's labels


class StoreEvents(Protocol):
    """containerd's event stream, every namespace at once; and a probe that travels it."""

    def events(self, topics: Iterable[str]) -> AsyncIterator[StoreEvent]:
        """The events on these topics until the stream breaks (then a RemovalError)."""
        ...

    async def probe(self, namespace: str, topic: str) -> None:
        """Publish an empty event on `topic`: a subscriber that sees it knows it is subscribed."""
        ...


class ChangeEvents(Protocol):
    """Where a removal's changes are announced, after its reply (drained on shutdown)."""

    def publish(self, namespace: str, reference: str, items: Sequence[Item]) -> None:
        """Queue one event per item of one removal; returns at once."""
        ...

    async def drain(self, seconds: float) -> None:
        """Wait, at most `seconds`, until everything queued is published."""
        ...
