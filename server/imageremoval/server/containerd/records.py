"""containerd's protobuf messages <-> the domain's records: the only place that reads their fields."""

from __future__ import annotations

from imageremoval.gen.containerd.services.containers.v1 import containers_pb2
from imageremoval.gen.containerd.services.content.v1 import content_pb2
from imageremoval.gen.containerd.services.images.v1 import images_pb2
from imageremoval.gen.containerd.services.snapshots.v1 import snapshots_pb2
from imageremoval.gen.containerd.types import descriptor_pb2
from imageremoval.gen.containerd.types.task import task_pb2
from imageremoval.server.domain.model import (
    ContainerRecord,
    ContentInfo,
    Descriptor,
    ImageRecord,
    SnapshotInfo,
    SnapshotKind,
    TaskState,
)

_SNAPSHOT_KINDS = {
    snapshots_pb2.Kind.ACTIVE: SnapshotKind.ACTIVE,
    snapshots_pb2.Kind.VIEW: SnapshotKind.VIEW,
    snapshots_pb2.Kind.COMMITTED: SnapshotKind.COMMITTED,
}
_RUNNING_STATES = frozenset({task_pb2.Status.RUNNING, task_pb2.Status.PAUSED, task_pb2.Status.PAUSING})


def to_descriptor(message: descriptor_pb2.Descriptor) -> Descriptor:
    annotations = message.annotations
    return Descriptor(
        media_type=message.media_type,
        digest=message.digest,
        size=message.size,
        annotations=dict(annotations) if annotations else {},
    )


def from_descriptor(descriptor: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=descriptor.media_type,
        digest=descriptor.digest,
        size=descriptor.size,
        annotations=dict(descriptor.annotations),
    )


def to_image(message: images_pb2.Image) -> ImageRecord:
    created = message.created_at
    return ImageRecord(
        name=message.name,
        target=to_descriptor(message.target),
        labels=dict(message.labels) if message.labels else {},
        created_ns=created.seconds * 1_000_000_000 + created.nanos,
    )


def from_image(record: ImageRecord) -> images_pb2.Image:
    return images_pb2.Image(name=record.name, target=from_descriptor(record.target), labels=dict(record.labels))


def to_content(info: content_pb2.Info) -> ContentInfo:
    return ContentInfo(digest=info.digest, size=info.size, labels=dict(info.labels))


def to_container(message: containers_pb2.Container) -> ContainerRecord:
    return ContainerRecord(
        id=message.id,
        image=message.image,
        snapshotter=message.snapshotter,
        snapshot_key=message.snapshot_key,
        labels=dict(message.labels),
    )


def to_snapshot(info: snapshots_pb2.Info, snapshotter: str) -> SnapshotInfo:
    """An unknown kind counts as active: mounted, so it protects what it sits on."""
    kind = _SNAPSHOT_KINDS.get(info.kind, SnapshotKind.ACTIVE)
    return SnapshotInfo(info.name, info.parent, kind, snapshotter=snapshotter, labels=dict(info.labels))


def task_state(status: int) -> TaskState:
    return TaskState.RUNNING if status in _RUNNING_STATES else TaskState.STOPPED
