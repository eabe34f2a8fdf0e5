"""The one adapter over containerd's gRPC stubs: adds the namespace header and maps containerd's errors."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2

from imageremoval.gen.containerd.events import image_pb2
from imageremoval.gen.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from imageremoval.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from imageremoval.gen.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from imageremoval.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from imageremoval.gen.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from imageremoval.gen.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from imageremoval.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from imageremoval.gen.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from imageremoval.gen.containerd.services.version.v1 import version_pb2_grpc
from imageremoval.gen.containerd.types import descriptor_pb2
from imageremoval.gen.containerd.types.task import task_pb2
from imageremoval.server.domain.errors import (
    AlreadyExistsInContainerd,
    ContainerdFailed,
    ContainerdUnavailable,
    DeadlineExceeded,
    NotFoundInContainerd,
)
from imageremoval.server.domain.model import (
    ContainerRecord,
    ContentInfo,
    Descriptor,
    ImageRecord,
    LeaseResource,
    SnapshotInfo,
    SnapshotKind,
    TaskState,
)
from imageremoval.server.telemetry.names import (
    EVENT_IMAGE_ID_LABEL,
    EVENT_TYPE_URL,
    EVENT_UNTAG_TYPE_URL,
    TOPIC_DELETE,
    TOPIC_PROBE,
    TOPIC_UNTAG,
)

_log = logging.getLogger(__name__)

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
MAX_METADATA_BLOB = 4 * 1024 * 1024  # indexes, manifests and configs are small; refuse to buffer more
_SNAPSHOT_KINDS = {
    snapshots_pb2.Kind.ACTIVE: SnapshotKind.ACTIVE,
    snapshots_pb2.Kind.VIEW: SnapshotKind.VIEW,
    snapshots_pb2.Kind.COMMITTED: SnapshotKind.COMMITTED,
}
RECONNECT_BACKOFF_MS = (100, 1000)  # first and longest wait between reconnection attempts to containerd
# containerd's client labels every lease with an expiry (containerd.io/gc.expire); ours do too, so a lease
# orphaned by a crash (ours or containerd's) stops holding content once it expires (issue 9 item 11).
LABEL_LEASE_EXPIRE = "containerd.io/gc.expire"
LEASE_EXPIRY_SECONDS = 600.0
_RUNNING_STATES = frozenset({task_pb2.Status.RUNNING, task_pb2.Status.PAUSED, task_pb2.Status.PAUSING})

# The caller's deadline (time.monotonic()), set by the remover for the calls of one request; None: no bound.
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("call_deadline", default=None)


def quote(value: str) -> str:
    """A containerd filter value, quoted so any character is safe (the filter syntax takes Go-style quotes)."""
    return json.dumps(value)


def _to_descriptor(message: descriptor_pb2.Descriptor) -> Descriptor:
    annotations = message.annotations
    return Descriptor(
        media_type=message.media_type,
        digest=message.digest,
        size=message.size,
        annotations=dict(annotations) if annotations else {},
    )


def _from_descriptor(descriptor: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=descriptor.media_type,
        digest=descriptor.digest,
        size=descriptor.size,
        annotations=dict(descriptor.annotations),
    )


def _to_image(message: images_pb2.Image) -> ImageRecord:
    created = message.created_at
    return ImageRecord(
        name=message.name,
        target=_to_descriptor(message.target),
        labels=dict(message.labels) if message.labels else {},
        created_ns=created.seconds * 1_000_000_000 + created.nanos,
    )


def _translate(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """containerd's status codes -> our errors; the only place that reads them."""
    code = exc.code()
    detail = exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundInContainerd(f"{what}: {detail}")
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExistsInContainerd(f"{what}: {detail}")
    if code == grpc.StatusCode.UNAVAILABLE:
        # gRPC's detail names the socket path and the OS error: for the server log, not for clients.
        _log.debug("containerd is unavailable (%s): %s", what, detail)
        unavailable = ContainerdUnavailable(f"containerd is unavailable ({what})", {"operation": what})
        unavailable.add_note(detail)
        return unavailable
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"deadline exceeded waiting for containerd ({what})", {"operation": what})
    return ContainerdFailed(
        f"containerd failed ({what}): {code.name}: {detail}", {"operation": what, "containerdCode": code.name}
    )


@dataclasses.dataclass(slots=True)
class Hold:
    """A lease held for a block; set keep to leave it to its expiry instead of deleting it at the end."""

    lease_id: str
    keep: bool = False


class ContainerdClient:
    """Typed, namespaced calls to the containerd services the removal needs."""

    def __init__(self, channel: grpc.aio.Channel, *, call_timeout: float = 60.0) -> None:
        self._channel = channel
        self._timeout = call_timeout
        self._images = images_pb2_grpc.ImagesStub(channel)
        self._content = content_pb2_grpc.ContentStub(channel)
        self._leases = leases_pb2_grpc.LeasesStub(channel)
        self._containers = containers_pb2_grpc.ContainersStub(channel)
        self._tasks = tasks_pb2_grpc.TasksStub(channel)
        self._events = events_pb2_grpc.EventsStub(channel)
        self._version = version_pb2_grpc.VersionStub(channel)
        self._snapshots = snapshots_pb2_grpc.SnapshotsStub(channel)
        self._namespaces = namespace_pb2_grpc.NamespacesStub(channel)

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
        call_timeout: float = 60.0,
    ) -> ContainerdClient:
        """Open one channel to containerd's unix socket, shared by every call."""
        target = address if address.startswith("unix:") else f"unix://{address}"
        channel = grpc.aio.insecure_channel(
            target,
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                # gRPC's default backoff grows to 120 s: after a long containerd outage we would stay
                # unavailable for seconds after it is back. A local socket is cheap to retry every second.
                ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
            ],
        )
        return cls(channel, call_timeout=call_timeout)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    def _metadata(self, namespace: str, lease: str | None = None) -> tuple[tuple[str, str], ...]:
        if lease:
            return ((NAMESPACE_HEADER, namespace), (LEASE_HEADER, lease))
        return ((NAMESPACE_HEADER, namespace),)

    def _timeout_for(self, what: str) -> float:
        """The call timeout: ours, shortened to the caller's remaining time."""
        deadline = CALL_DEADLINE.get()
        if deadline is None:
            return self._timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"deadline exceeded before calling containerd ({what})", {"operation": what})
        return min(self._timeout, left)

    async def _call(self, what: str, call: Any, request: Any, namespace: str, lease: str | None = None) -> Any:
        timeout = self._timeout_for(what)
        try:
            return await call(request, metadata=self._metadata(namespace, lease), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, what) from None

    async def find_image(self, namespace: str, name: str, *, wait_seconds: float) -> ImageRecord | None:
        """The record with this name, or None; waits up to wait_seconds for containerd to answer again
        (how a removal learns what a delete whose answer was lost did)."""
        request = images_pb2.GetImageRequest(name=name)
        try:
            reply = await self._images.Get(
                request, metadata=self._metadata(namespace), timeout=wait_seconds, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            error = _translate(exc, "images.get")
            if isinstance(error, NotFoundInContainerd):
                return None
            raise error from None
        return _to_image(reply.image)

    async def version(self) -> str:
        """containerd's version; also the health probe."""
        try:
            reply = await self._version.Version(empty_pb2.Empty(), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, "version") from None
        return str(reply.version)

    async def find_content(self, namespace: str, digest: str, *, wait_seconds: float) -> ContentInfo | None:
        """A blob's info, or None; waits up to wait_seconds for containerd to answer again."""
        request = content_pb2.InfoRequest(digest=digest)
        try:
            reply = await self._content.Info(
                request, metadata=self._metadata(namespace), timeout=wait_seconds, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            error = _translate(exc, "content.info")
            if isinstance(error, NotFoundInContainerd):
                return None
            raise error from None
        return ContentInfo(digest=reply.info.digest, size=reply.info.size, labels=dict(reply.info.labels))

    # Images

    async def get_image(self, namespace: str, name: str) -> ImageRecord:
        """The record with exactly this name; NotFoundInContainerd if none."""
        reply = await self._call("images.get", self._images.Get, images_pb2.GetImageRequest(name=name), namespace)
        return _to_image(reply.image)

    async def list_images(self, namespace: str, filters: Iterable[str] = ()) -> list[ImageRecord]:
        """Records matching any of the filters (containerd ORs them); all records when none."""
        request = images_pb2.ListImagesRequest(filters=list(filters))
        reply = await self._call("images.list", self._images.List, request, namespace)
        return [_to_image(image) for image in reply.images]

    async def create_image(self, namespace: str, record: ImageRecord) -> None:
        """Create a record; AlreadyExistsInContainerd if the name is taken."""
        image = images_pb2.Image(name=record.name, target=_from_descriptor(record.target), labels=dict(record.labels))
        await self._call("images.create", self._images.Create, images_pb2.CreateImageRequest(image=image), namespace)

    async def delete_image(self, namespace: str, name: str, target: Descriptor | None, *, sync: bool) -> None:
        """Delete a record; with target, containerd 1.7+ deletes only if it still points there."""
        request = images_pb2.DeleteImageRequest(name=name, sync=sync)
        if target is not None:
            request.target.CopyFrom(_from_descriptor(target))
        await self._call("images.delete", self._images.Delete, request, namespace)

    async def update_image_labels(self, namespace: str, record: ImageRecord, labels: Mapping[str, str]) -> None:
        """Set exactly these labels of one record (a field mask of labels only: its target, other labels and
        creation time stay as they are); NotFoundInContainerd if the record is gone. The record goes with its
        target and labels as read: containerd 2.4 refuses (crashes on) an Update whose image has no target."""
        image = images_pb2.Image(
            name=record.name, target=_from_descriptor(record.target), labels={**record.labels, **labels}
        )
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        request = images_pb2.UpdateImageRequest(image=image, update_mask=mask)
        await self._call("images.update", self._images.Update, request, namespace)

    async def list_namespaces(self) -> list[str]:
        """Every namespace containerd knows."""
        try:
            reply = await self._namespaces.List(
                namespace_pb2.ListNamespacesRequest(), timeout=self._timeout_for("namespaces.list")
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, "namespaces.list") from None
        return sorted(n.name for n in reply.namespaces)

    async def subscribe(self, topics: Iterable[str]) -> AsyncIterator[tuple[str, str, any_pb2.Any]]:
        """containerd's events on these topics, from every namespace: (namespace, topic, payload), until the
        stream breaks (then ContainerdUnavailable or ContainerdFailed)."""
        request = events_pb2.SubscribeRequest(filters=[f"topic=={quote(t)}" for t in topics])
        try:
            async for envelope in self._events.Subscribe(request):
                yield envelope.namespace, envelope.topic, envelope.event
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, "events.subscribe") from None

    # Content

    async def content_info(self, namespace: str, digest: str) -> ContentInfo:
        """A blob's size and labels; NotFoundInContainerd if the store lacks it."""
        reply = await self._call("content.info", self._content.Info, content_pb2.InfoRequest(digest=digest), namespace)
        return ContentInfo(digest=reply.info.digest, size=reply.info.size, labels=dict(reply.info.labels))

    async def read_blob(self, namespace: str, digest: str, size_limit: int = MAX_METADATA_BLOB) -> bytes:
        """A whole small blob (index, manifest, config)."""
        chunks: list[bytes] = []
        total = 0
        request = content_pb2.ReadContentRequest(digest=digest)
        try:
            stream = self._content.Read(
                request, metadata=self._metadata(namespace), timeout=self._timeout_for("content.read")
            )
            async for reply in stream:
                total += len(reply.data)
                if total > size_limit:
                    stream.cancel()
                    raise ContainerdFailed(
                        f"blob {digest} is larger than {size_limit} bytes", {"digest": digest, "tooLarge": "true"}
                    )
                chunks.append(reply.data)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, "content.read") from None
        return b"".join(chunks)

    async def list_content(self, namespace: str, filters: Iterable[str]) -> list[ContentInfo]:
        """Blobs matching any filter, e.g. `labels."containerd.io/gc.ref.content.config"==<digest>`."""
        request = content_pb2.ListContentRequest(filters=list(filters))
        found: list[ContentInfo] = []
        try:
            stream = self._content.List(
                request, metadata=self._metadata(namespace), timeout=self._timeout_for("content.list")
            )
            async for reply in stream:
                found.extend(
                    ContentInfo(digest=info.digest, size=info.size, labels=dict(info.labels)) for info in reply.info
                )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, "content.list") from None
        return found

    async def update_content_labels(self, namespace: str, digest: str, labels: Mapping[str, str]) -> None:
        """Set or (with an empty value) remove exactly these labels of a blob."""
        info = content_pb2.Info(digest=digest, labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        request = content_pb2.UpdateRequest(info=info, update_mask=mask)
        await self._call("content.update", self._content.Update, request, namespace)

    # Containers and tasks

    async def list_containers(self, namespace: str) -> list[ContainerRecord]:
        """Every container in the namespace."""
        reply = await self._call(
            "containers.list", self._containers.List, containers_pb2.ListContainersRequest(), namespace
        )
        return [
            ContainerRecord(
                id=c.id,
                image=c.image,
                snapshotter=c.snapshotter,
                snapshot_key=c.snapshot_key,
                labels=dict(c.labels),
            )
            for c in reply.containers
        ]

    async def task_states(self, namespace: str) -> dict[str, TaskState]:
        """The state of every task in the namespace, by container ID (no entry: no task)."""
        reply = await self._call("tasks.list", self._tasks.List, tasks_pb2.ListTasksRequest(), namespace)
        return {
            process.id: TaskState.RUNNING if process.status in _RUNNING_STATES else TaskState.STOPPED
            for process in reply.tasks
        }

    async def active_snapshots(self, namespace: str, snapshotter: str) -> dict[str, str]:
        """Active (writable) snapshots, key -> parent: root filesystems (also one prepared for a container not
        yet created) and layers being unpacked."""
        request = snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter, filters=["kind==active"])
        found: dict[str, str] = {}
        try:
            stream = self._snapshots.List(
                request, metadata=self._metadata(namespace), timeout=self._timeout_for("snapshots.list")
            )
            async for reply in stream:
                found.update({info.name: info.parent for info in reply.info})
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, "snapshots.list") from None
        return found

    async def list_snapshots(self, namespace: str, snapshotter: str) -> list[SnapshotInfo]:
        """Every snapshot of one snapshotter in the namespace (an unknown kind counts as active: mounted)."""
        request = snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter)
        found: list[SnapshotInfo] = []
        try:
            stream = self._snapshots.List(
                request, metadata=self._metadata(namespace), timeout=self._timeout_for("snapshots.list")
            )
            async for reply in stream:
                found.extend(
                    SnapshotInfo(
                        info.name,
                        info.parent,
                        _SNAPSHOT_KINDS.get(info.kind, SnapshotKind.ACTIVE),
                        snapshotter=snapshotter,
                        labels=dict(info.labels),
                    )
                    for info in reply.info
                )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, "snapshots.list") from None
        return found

    async def snapshot_usage(self, namespace: str, snapshotter: str, key: str) -> int:
        """The bytes one snapshot's own layer uses on disk, as the snapshotter's Usage reports them."""
        request = snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key)
        reply = await self._call("snapshots.usage", self._snapshots.Usage, request, namespace)
        return int(reply.size)

    async def lease_resources(self, namespace: str) -> list[LeaseResource]:
        """Every resource every lease of the namespace holds."""
        reply = await self._call("leases.list", self._leases.List, leases_pb2.ListRequest(), namespace)
        held: list[LeaseResource] = []
        for lease in reply.leases:
            try:
                resources = await self._call(
                    "leases.list_resources",
                    self._leases.ListResources,
                    leases_pb2.ListResourcesRequest(id=lease.id),
                    namespace,
                )
            except NotFoundInContainerd:
                continue  # deleted meanwhile: holds nothing
            held.extend(LeaseResource(lease=lease.id, type=r.type, id=r.id) for r in resources.resources)
        return held

    # Leases and garbage collection

    @contextlib.asynccontextmanager
    async def temporary_lease(self, namespace: str) -> AsyncIterator[str]:
        """A lease for the duration of a block; deleted synchronously at the end, which runs a GC pass."""
        lease_id = await self._create_lease(namespace)
        try:
            yield lease_id
        finally:
            await self._call(
                "leases.delete",
                self._leases.Delete,
                leases_pb2.DeleteRequest(id=lease_id, sync=True),
                namespace,
            )

    @contextlib.asynccontextmanager
    async def holding(self, namespace: str, digest: str, *, collect: bool) -> AsyncIterator[Hold]:
        """`hold` for the duration of a block, then `release`."""
        hold = await self.hold(namespace, digest)
        try:
            yield hold
        finally:
            await self.release(namespace, hold, collect=collect)

    async def hold(self, namespace: str, digest: str) -> Hold:
        """Hold a blob (and, through its garbage-collection labels, everything it references) under a new
        lease of ours until `release`."""
        hold = Hold(await self._create_lease(namespace))
        try:
            resource = leases_pb2.Resource(id=digest, type="content")
            request = leases_pb2.AddResourceRequest(id=hold.lease_id, resource=resource)
            await self._call("leases.addresource", self._leases.AddResource, request, namespace)
        except BaseException:
            await self.release(namespace, hold, collect=False)
            raise
        return hold

    async def release(self, namespace: str, hold: Hold, *, collect: bool) -> None:
        """Delete the lease, with one synchronous collection pass when `collect`; unless `keep` was set (then,
        as when deleting it fails, the content is freed when the lease expires). Never raises."""
        if hold.keep:
            _log.warning("lease %s kept until it expires: its content may still be needed", hold.lease_id)
            return
        try:
            await self._call(
                "leases.delete",
                self._leases.Delete,
                leases_pb2.DeleteRequest(id=hold.lease_id, sync=collect),
                namespace,
            )
        except Exception as exc:  # never fatal (also a channel closed at shutdown): the lease expires by itself
            _log.warning("lease %s not deleted (it expires by itself): %s", hold.lease_id, exc)

    async def _create_lease(self, namespace: str) -> str:
        lease_id = f"imageremoval-{uuid.uuid4().hex}"
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=LEASE_EXPIRY_SECONDS)
        labels = {LABEL_LEASE_EXPIRE: expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        request = leases_pb2.CreateRequest(id=lease_id, labels=labels)
        await self._call("leases.create", self._leases.Create, request, namespace)
        return lease_id

    # Events

    async def publish_untag(self, namespace: str, image_id: str, name: str) -> None:
        """Publish `/imageremoval/untag`: the name that is gone and the image it named, as containerd's own
        ImageUpdate (name, labels[imageId])."""
        payload = image_pb2.ImageUpdate(name=name, labels={EVENT_IMAGE_ID_LABEL: image_id} if image_id else {})
        await self._publish(namespace, TOPIC_UNTAG, EVENT_UNTAG_TYPE_URL, payload.SerializeToString())

    async def publish_delete(self, namespace: str, image_id: str) -> None:
        """Publish `/imageremoval/delete`: the image ID that is gone, as containerd's own ImageDelete."""
        payload = image_pb2.ImageDelete(name=image_id)
        await self._publish(namespace, TOPIC_DELETE, EVENT_TYPE_URL, payload.SerializeToString())

    async def publish_probe(self, namespace: str) -> None:
        """Publish `/imageremoval/usage-probe` (empty payload): a subscriber seeing it knows it is subscribed."""
        await self._publish(namespace, TOPIC_PROBE, "google.protobuf.Empty", b"")

    async def _publish(self, namespace: str, topic: str, type_url: str, value: bytes) -> None:
        # The bare type name, as containerd's typeurl writes it: every containerd consumer decodes it.
        request = events_pb2.PublishRequest(topic=topic, event=any_pb2.Any(type_url=type_url, value=value))
        await self._call("events.publish", self._events.Publish, request, namespace)
