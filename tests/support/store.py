"""Direct access to containerd for the tests: create images as a pull would, and inspect what remains."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2

from imageremoval.gen.containerd.events import image_pb2
from imageremoval.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from imageremoval.gen.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from imageremoval.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from imageremoval.gen.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from imageremoval.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from imageremoval.gen.containerd.types import descriptor_pb2

from .images import Blob, Index, Manifest, digest_of

LABEL_PARENT = "org.mobyproject.image.parent"


@dataclass(frozen=True)
class Event:
    """An event seen on containerd's event service."""

    topic: str
    namespace: str
    payload: any_pb2.Any

    def decode(self) -> image_pb2.ImageDelete | image_pb2.ImageUpdate:
        # containerd writes bare type names (no "type.googleapis.com/"), which Any.Unpack refuses: match the name.
        kind = self.payload.type_url.rsplit("/", 1)[-1]
        for message in (image_pb2.ImageDelete, image_pb2.ImageUpdate):
            if kind == message.DESCRIPTOR.full_name:
                return message.FromString(self.payload.value)
        raise AssertionError(f"unexpected event payload {self.payload.type_url}")

    def image_id(self) -> str:
        """The image an untag event's name pointed to (its imageId label); empty for other payloads."""
        decoded = self.decode()
        return decoded.labels.get("imageId", "") if isinstance(decoded, image_pb2.ImageUpdate) else ""


@dataclass
class EventRecorder:
    """Collects events of one namespace in a background thread."""

    events: list[Event] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def ours(self) -> list[tuple[str, str]]:
        """(topic, image_id or name) of imageremoval's own events, in order."""
        out: list[tuple[str, str]] = []
        for event in self.events:
            if not event.topic.startswith("/imageremoval/"):
                continue
            out.append((event.topic, event.decode().name))
        return out

    def untagged_image_ids(self) -> list[tuple[str, str]]:
        """(name, image ID) of each of imageremoval's untag events, in order."""
        return [(e.decode().name, e.image_id()) for e in self.events if e.topic == "/imageremoval/untag"]


class Store:
    """Synchronous stubs over one containerd, with the namespace header added per call."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.images = images_pb2_grpc.ImagesStub(self.channel)
        self.content = content_pb2_grpc.ContentStub(self.channel)
        self.leases = leases_pb2_grpc.LeasesStub(self.channel)
        self.events = events_pb2_grpc.EventsStub(self.channel)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    @staticmethod
    def md(namespace: str, lease: str | None = None) -> tuple[tuple[str, str], ...]:
        if lease:
            return (("containerd-namespace", namespace), ("containerd-lease", lease))
        return (("containerd-namespace", namespace),)

    # writing

    @contextlib.contextmanager
    def lease(self, namespace: str, *, keep: bool = False) -> Iterator[str]:
        """A lease protecting fresh content until an image references it (or forever with keep)."""
        lease_id = f"test-{uuid.uuid4().hex[:12]}"
        self.leases.Create(leases_pb2.CreateRequest(id=lease_id), metadata=self.md(namespace))
        try:
            yield lease_id
        finally:
            if not keep:
                self.leases.Delete(leases_pb2.DeleteRequest(id=lease_id), metadata=self.md(namespace))

    def write_blob(self, namespace: str, blob: Blob, lease: str, labels: dict[str, str] | None = None) -> None:
        """Commit one blob through Content.Write, as the transfer service of a pull does."""
        request = content_pb2.WriteContentRequest(
            action=content_pb2.WriteAction.COMMIT,
            ref=f"test-{blob.digest}",
            total=blob.size,
            expected=blob.digest,
            data=blob.data,
            labels=labels or {},
        )
        try:
            for _ in self.content.Write(iter([request]), metadata=self.md(namespace, lease)):
                pass
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            if labels:
                self.set_labels(namespace, blob.digest, labels)

    def write_manifest(self, namespace: str, m: Manifest, lease: str) -> None:
        for layer in m.layers:
            self.write_blob(namespace, layer.blob, lease)
        self.write_blob(namespace, m.config, lease)
        self.write_blob(namespace, m.blob, lease, m.gc_labels())

    def create_record(self, namespace: str, name: str, target: Blob, labels: dict[str, str] | None = None) -> None:
        image = images_pb2.Image(
            name=name,
            target=descriptor_pb2.Descriptor(media_type=target.media_type, digest=target.digest, size=target.size),
            labels=labels or {},
        )
        self.images.Create(images_pb2.CreateImageRequest(image=image), metadata=self.md(namespace))

    def put(
        self,
        namespace: str,
        names: Sequence[str],
        image: Manifest | Index,
        *,
        labels: dict[str, str] | None = None,
        missing: Sequence[Manifest] = (),
    ) -> str:
        """Write the image's blobs (leaving out `missing` manifests) and create a record per name."""
        with self.lease(namespace) as lease:
            if isinstance(image, Index):
                for m in image.manifests:
                    if m not in missing:
                        self.write_manifest(namespace, m, lease)
                self.write_blob(namespace, image.blob, lease, image.gc_labels())
            else:
                self.write_manifest(namespace, image, lease)
            for name in names:
                self.create_record(namespace, name, image.blob, labels)
        return image.blob.digest

    def tag(self, namespace: str, source: str, name: str) -> bool:
        """Retag as a careful client must on containerd (no atomic tag): lease the target, then read and create.

        Without the lease, a removal's garbage collection can run between the read and the create, leaving a
        record whose content is gone; that race is the tagger's, and no remover can close it.
        """
        with self.lease(namespace) as lease:
            target = self.target(namespace, source)
            if target is None:
                return False
            self.leases.AddResource(
                leases_pb2.AddResourceRequest(id=lease, resource=leases_pb2.Resource(id=target, type="content")),
                metadata=self.md(namespace),
            )
            try:
                reply = self.images.Get(images_pb2.GetImageRequest(name=source), metadata=self.md(namespace))
            except grpc.RpcError:
                return False  # removed meanwhile: nothing to tag
            if reply.image.target.digest != target:
                return False
            image = images_pb2.Image(name=name, target=reply.image.target, labels=dict(reply.image.labels))
            self.images.Create(images_pb2.CreateImageRequest(image=image), metadata=self.md(namespace))
        return True

    def set_labels(self, namespace: str, digest: str, labels: dict[str, str]) -> None:
        from google.protobuf import field_mask_pb2

        info = content_pb2.Info(digest=digest, labels=labels)
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
        self.content.Update(content_pb2.UpdateRequest(info=info, update_mask=mask), metadata=self.md(namespace))

    def delete_record(self, namespace: str, name: str) -> None:
        self.images.Delete(images_pb2.DeleteImageRequest(name=name, sync=True), metadata=self.md(namespace))

    # reading

    def names(self, namespace: str) -> set[str]:
        reply = self.images.List(images_pb2.ListImagesRequest(), metadata=self.md(namespace))
        return {image.name for image in reply.images}

    def records(self, namespace: str) -> list[images_pb2.Image]:
        return list(self.images.List(images_pb2.ListImagesRequest(), metadata=self.md(namespace)).images)

    def target(self, namespace: str, name: str) -> str | None:
        try:
            reply = self.images.Get(images_pb2.GetImageRequest(name=name), metadata=self.md(namespace))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return str(reply.image.target.digest)

    def labels_of(self, namespace: str, digest: str) -> dict[str, str] | None:
        try:
            reply = self.content.Info(content_pb2.InfoRequest(digest=digest), metadata=self.md(namespace))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return dict(reply.info.labels)

    def has(self, namespace: str, digest: str) -> bool:
        return self.labels_of(namespace, digest) is not None

    def read(self, namespace: str, digest: str) -> bytes:
        stream = self.content.Read(content_pb2.ReadContentRequest(digest=digest), metadata=self.md(namespace))
        return b"".join(chunk.data for chunk in stream)

    def intact(self, namespace: str, digest: str) -> bool:
        """The blob is present and its bytes still hash to its digest."""
        return self.has(namespace, digest) and digest_of(self.read(namespace, digest)) == digest

    def all_present(self, namespace: str, image: Manifest | Index) -> bool:
        blobs = [image.blob] + (
            [b for m in image.manifests for b in m.blobs] if isinstance(image, Index) else list(image.blobs[1:])
        )
        return all(self.intact(namespace, b.digest) for b in blobs)

    def unpacked_bytes(self, namespace: str, config: str, snapshotter: str = "overlayfs") -> int:
        """The Usage of an unpacked image's layer chain, followed from its config's snapshot label."""
        labels = self.labels_of(namespace, config) or {}
        key = labels.get(f"containerd.io/gc.ref.snapshot.{snapshotter}", "")
        total = 0
        while key:
            usage = self.snapshots.Usage(
                snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key), metadata=self.md(namespace)
            )
            total += usage.size
            stat = self.snapshots.Stat(
                snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key), metadata=self.md(namespace)
            )
            key = stat.info.parent
        return total

    def snapshot_keys(self, namespace: str, snapshotter: str = "overlayfs") -> set[str]:
        request = snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter)
        return {i.name for reply in self.snapshots.List(request, metadata=self.md(namespace)) for i in reply.info}

    # events

    @contextlib.contextmanager
    def record_events(self, namespace: str, expect: int = 0) -> Iterator[EventRecorder]:
        """Subscribe to this namespace's events for the duration of the block.

        The server publishes a removal's events just after its reply, so the block's end waits (up to 10 s)
        until `expect` imageremoval events have arrived before it stops listening.
        """
        recorder = EventRecorder()
        call = self.events.Subscribe(events_pb2.SubscribeRequest(filters=[f'namespace=="{namespace}"']))

        def pump() -> None:
            try:
                for envelope in call:
                    recorder.events.append(Event(envelope.topic, envelope.namespace, envelope.event))
            except grpc.RpcError:
                pass

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        # Publish a marker and wait until we see it, so no event of the test can be missed.
        marker = any_pb2.Any(  # in containerd's own encoding, so `ctr events` watching alongside stays quiet
            type_url=image_pb2.ImageDelete.DESCRIPTOR.full_name,
            value=image_pb2.ImageDelete(name="marker").SerializeToString(),
        )
        deadline = 50
        while not any(e.topic == "/test/marker" for e in recorder.events) and deadline:
            self.events.Publish(
                events_pb2.PublishRequest(topic="/test/marker", event=marker), metadata=self.md(namespace)
            )
            threading.Event().wait(0.1)
            deadline -= 1
        try:
            yield recorder
            for _ in range(100):
                if len(recorder.ours()) >= expect:
                    break
                threading.Event().wait(0.1)
        finally:
            # Settle: a last marker proves every earlier event was delivered.
            self.events.Publish(events_pb2.PublishRequest(topic="/test/end", event=marker), metadata=self.md(namespace))
            for _ in range(50):
                if any(e.topic == "/test/end" for e in recorder.events):
                    break
                threading.Event().wait(0.1)
            call.cancel()
            thread.join(5)
