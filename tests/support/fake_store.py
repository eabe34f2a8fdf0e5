"""An in-memory ImageStore: unit tests of the rules through the port, without containerd (pure logic only)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from imageremoval.server.domain.errors import AlreadyExistsInContainerd, NotFoundInContainerd
from imageremoval.server.domain.model import (
    LABEL_GC_CONTENT_PREFIX,
    LABEL_PARENT,
    ContainerRecord,
    ContentInfo,
    Descriptor,
    ImageRecord,
    Item,
    LeaseResource,
    SnapshotInfo,
    SnapshotKind,
    TaskState,
)
from imageremoval.server.domain.store import Hold

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeStore:
    """One namespace held in dictionaries; answers the port's questions as containerd would."""

    namespace: str = "fake"
    records: dict[str, ImageRecord] = field(default_factory=dict)
    blobs: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    container_records: list[ContainerRecord] = field(default_factory=list)
    tasks: dict[str, TaskState] = field(default_factory=dict)
    snapshot_lists: dict[str, list[SnapshotInfo]] = field(default_factory=dict)
    collections: int = 0

    # Building a store

    def put_blob(self, value: Any, media_type: str, labels: Mapping[str, str] | None = None) -> Descriptor:
        data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
        digest = digest_of(data)
        self.blobs[digest] = (data, dict(labels or {}))
        return Descriptor(media_type, digest, len(data))

    def put_manifest(self, diff_ids: Sequence[str], *, note: str = "", architecture: str = "amd64") -> Descriptor:
        """A manifest, its config (naming these layers) and its layer blobs, all present."""
        config = self.put_blob(
            {
                "architecture": architecture,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
                "config": {"Labels": {"note": note}},
            },
            MEDIA_CONFIG,
        )
        layers = [self.put_blob(f"layer {d}".encode(), MEDIA_LAYER) for d in diff_ids]
        body = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in layers],
        }
        return self.put_blob(body, MEDIA_MANIFEST, {f"{LABEL_GC_CONTENT_PREFIX}config": config.digest})

    def put_index(self, entries: Sequence[tuple[Descriptor, Mapping[str, str]]]) -> Descriptor:
        body = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {"mediaType": d.media_type, "digest": d.digest, "size": d.size, "platform": dict(p)} for d, p in entries
            ],
        }
        labels = {f"{LABEL_GC_CONTENT_PREFIX}m.{n}": d.digest for n, (d, _) in enumerate(entries)}
        return self.put_blob(body, MEDIA_INDEX, labels)

    def tag(self, name: str, target: Descriptor, *, parent: str = "", **labels: str) -> ImageRecord:
        all_labels = {**labels, **({LABEL_PARENT: parent} if parent else {})}
        record = ImageRecord(name, target, all_labels)
        self.records[name] = record
        return record

    def snapshot(self, name: str, parent: str, kind: SnapshotKind, snapshotter: str = "overlayfs") -> None:
        self.snapshot_lists.setdefault(snapshotter, []).append(SnapshotInfo(name, parent, kind, snapshotter))

    def container(self, container_id: str, image: str, state: TaskState | None, *, snapshot_key: str = "") -> None:
        self.container_records.append(ContainerRecord(container_id, image, "overlayfs", snapshot_key))
        if state is not None:
            self.tasks[container_id] = state

    # The port

    def unbounded(self) -> FakeStore:
        return self

    async def image(self, name: str) -> ImageRecord | None:
        return self.records.get(name)

    async def images(self) -> list[ImageRecord]:
        return list(self.records.values())

    async def records_of(self, image_id: str) -> list[ImageRecord]:
        return [r for r in self.records.values() if r.image_id == image_id]

    async def image_and_children(self, image_id: str) -> list[ImageRecord]:
        return [r for r in self.records.values() if image_id in (r.image_id, r.labels.get(LABEL_PARENT))]

    async def records_by_id_prefix(self, hex_prefix: str, lookalike_name: str) -> list[ImageRecord]:
        return [
            r
            for r in self.records.values()
            if r.name == lookalike_name or r.image_id.startswith(f"sha256:{hex_prefix}")
        ]

    async def records_named(self, names: Collection[str]) -> list[ImageRecord]:
        return [self.records[n] for n in names if n in self.records]

    async def create_image(self, record: ImageRecord) -> None:
        if record.name in self.records:
            raise AlreadyExistsInContainerd(record.name)
        self.records[record.name] = record

    async def delete_image(self, record: ImageRecord, *, sync: bool) -> None:
        current = self.records.get(record.name)
        if current is None or current.image_id != record.image_id:
            raise NotFoundInContainerd(record.name)
        del self.records[record.name]
        self.collections += sync

    async def set_image_labels(self, record: ImageRecord, labels: Mapping[str, str]) -> None:
        current = self.records.get(record.name)
        if current is None:
            raise NotFoundInContainerd(record.name)
        self.records[record.name] = replace(current, labels={**current.labels, **labels})

    async def await_image(self, name: str, *, wait_seconds: float) -> ImageRecord | None:
        return self.records.get(name)

    async def content(self, digest: str) -> ContentInfo | None:
        found = self.blobs.get(digest)
        return None if found is None else ContentInfo(digest, len(found[0]), dict(found[1]))

    async def await_content(self, digest: str, *, wait_seconds: float) -> ContentInfo | None:
        return await self.content(digest)

    async def all_content(self) -> list[ContentInfo]:
        return [ContentInfo(d, len(data), dict(labels)) for d, (data, labels) in self.blobs.items()]

    async def read_blob(self, digest: str) -> bytes | None:
        found = self.blobs.get(digest)
        return None if found is None else found[0]

    async def config_in_use(self, config: str) -> bool:
        key = f"{LABEL_GC_CONTENT_PREFIX}config"
        return any(labels.get(key) == config for _, labels in self.blobs.values())

    async def set_content_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        if digest not in self.blobs:
            raise NotFoundInContainerd(digest)
        data, current = self.blobs[digest]
        current.update({k: v for k, v in labels.items() if v})
        for key in (k for k, v in labels.items() if not v):
            current.pop(key, None)
        self.blobs[digest] = (data, current)

    async def containers(self) -> list[ContainerRecord]:
        return list(self.container_records)

    async def task_states(self) -> dict[str, TaskState]:
        return dict(self.tasks)

    async def snapshots(self, snapshotter: str) -> list[SnapshotInfo]:
        return list(self.snapshot_lists.get(snapshotter, []))

    async def active_snapshots(self, snapshotter: str) -> dict[str, str]:
        return {s.name: s.parent for s in self.snapshot_lists.get(snapshotter, []) if s.kind is SnapshotKind.ACTIVE}

    async def snapshot_usage(self, snapshotter: str, key: str) -> int:
        return 0

    async def lease_resources(self) -> list[LeaseResource]:
        return []

    async def hold(self, digest: str) -> Hold:
        return Hold(f"fake-{digest}")

    async def release(self, hold: Hold, *, collect: bool) -> None:
        self.collections += collect

    async def collect_garbage(self) -> None:
        self.collections += 1


@dataclass
class FakeStores:
    """The ImageStores a remover is built on, handing out one FakeStore whatever the namespace or deadline."""

    store: FakeStore

    def scope(self, namespace: str, *, deadline: float | None = None) -> FakeStore:
        return self.store

    async def namespaces(self) -> list[str]:
        return [self.store.namespace]


@dataclass
class KeptEvents:
    """ChangeEvents that keep what a removal would announce."""

    published: list[tuple[str, str, list[Item]]] = field(default_factory=list)

    def publish(self, namespace: str, reference: str, items: Sequence[Item]) -> None:
        self.published.append((namespace, reference, list(items)))

    async def drain(self, seconds: float) -> None:
        return None
