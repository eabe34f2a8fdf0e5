"""The ImageStore port answered by containerd: filter syntax, the namespace header and the deadline live here."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Collection, Mapping
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2, field_mask_pb2

from imageremoval.gen.containerd.events import image_pb2
from imageremoval.gen.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from imageremoval.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from imageremoval.gen.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from imageremoval.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from imageremoval.gen.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from imageremoval.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from imageremoval.gen.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from imageremoval.server.containerd import records
from imageremoval.server.containerd.error_mapping import mapped
from imageremoval.server.containerd.index_table import ImageTable
from imageremoval.server.domain.errors import ContainerdFailed, DeadlineExceeded, NotFoundInContainerd
from imageremoval.server.domain.model import (
    LABEL_GC_CONTENT_PREFIX,
    LABEL_PARENT,
    ContainerRecord,
    ContentInfo,
    ImageRecord,
    LeaseResource,
    SnapshotInfo,
    TaskState,
)
from imageremoval.server.domain.store import Hold
from imageremoval.server.telemetry.names import (
    EVENT_IMAGE_ID_LABEL,
    EVENT_TYPE_URL,
    EVENT_UNTAG_TYPE_URL,
    TOPIC_DELETE,
    TOPIC_UNTAG,
)

_log = logging.getLogger(__name__)

NAMESPACE_HEADER = "containerd-namespace"
MAX_METADATA_BLOB = 4 * 1024 * 1024  # indexes, manifests and configs are small; refuse to buffer more
# containerd's client labels every lease with an expiry (containerd.io/gc.expire); ours do too, so a lease
# orphaned by a crash (ours or containerd's) stops holding content once it expires (issue 9 item 11).
LABEL_LEASE_EXPIRE = "containerd.io/gc.expire"
LEASE_EXPIRY_SECONDS = 600.0
_NAME_FILTER_CHUNK = 64  # names per List call: containerd ORs the filters, and a request has a size limit


def quote(value: str) -> str:
    """A containerd filter value, quoted so any character is safe (the filter syntax takes Go-style quotes)."""
    return json.dumps(value)


def _target_is(digest: str) -> str:
    return f"target.digest=={quote(digest)}"


def _parent_is(digest: str) -> str:
    return f"labels.{quote(LABEL_PARENT)}=={quote(digest)}"


@dataclasses.dataclass(frozen=True, slots=True)
class Stubs:
    """containerd's services on one channel, and our own bound on each call."""

    images: images_pb2_grpc.ImagesStub
    content: content_pb2_grpc.ContentStub
    leases: leases_pb2_grpc.LeasesStub
    containers: containers_pb2_grpc.ContainersStub
    tasks: tasks_pb2_grpc.TasksStub
    events: events_pb2_grpc.EventsStub
    snapshots: snapshots_pb2_grpc.SnapshotsStub
    call_timeout: float

    @classmethod
    def on(cls, channel: grpc.aio.Channel, call_timeout: float) -> Stubs:
        return cls(
            images=images_pb2_grpc.ImagesStub(channel),
            content=content_pb2_grpc.ContentStub(channel),
            leases=leases_pb2_grpc.LeasesStub(channel),
            containers=containers_pb2_grpc.ContainersStub(channel),
            tasks=tasks_pb2_grpc.TasksStub(channel),
            events=events_pb2_grpc.EventsStub(channel),
            snapshots=snapshots_pb2_grpc.SnapshotsStub(channel),
            call_timeout=call_timeout,
        )


class ImageTables(Protocol):
    """The image index (containerd/image_index.py): a namespace's records as of now, or None (then ask)."""

    async def table(self, namespace: str, deadline: float | None) -> ImageTable | None: ...


class ContainerdStore:
    """One namespace of containerd; every call bounded by our timeout, shortened to the caller's deadline.

    With an image index, the record questions (image, records_of, image_and_children, records_by_id_prefix)
    are answered from its table after a barrier of their own (README, "The image index"); without one, or
    when it cannot answer, by containerd's Get and filtered List.
    """

    def __init__(
        self, stubs: Stubs, namespace: str, deadline: float | None = None, index: ImageTables | None = None
    ) -> None:
        self._stubs = stubs
        self._namespace = namespace
        self._deadline = deadline
        self._index = index

    @property
    def namespace(self) -> str:
        return self._namespace

    def unbounded(self) -> ContainerdStore:
        return ContainerdStore(self._stubs, self._namespace, index=self._index)

    async def _table(self) -> ImageTable | None:
        return None if self._index is None else await self._index.table(self._namespace, self._deadline)

    # How every call is made

    def _timeout(self, what: str) -> float:
        """Our call timeout, shortened to the caller's remaining time."""
        if self._deadline is None:
            return self._stubs.call_timeout
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"deadline exceeded before calling containerd ({what})", {"operation": what})
        return min(self._stubs.call_timeout, left)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return ((NAMESPACE_HEADER, self._namespace),)

    async def _unary(self, what: str, call: Any, request: Any) -> Any:
        timeout = self._timeout(what)
        with mapped(what):
            return await call(request, metadata=self._metadata(), timeout=timeout)

    async def _waiting(self, what: str, call: Any, request: Any, wait_seconds: float) -> Any | None:
        """A read that waits up to wait_seconds for containerd to answer again; None when NotFound."""
        with contextlib.suppress(NotFoundInContainerd), mapped(what):
            return await call(request, metadata=self._metadata(), timeout=wait_seconds, wait_for_ready=True)
        return None

    async def _stream(self, what: str, call: Any, request: Any) -> AsyncGenerator[Any, None]:
        timeout = self._timeout(what)
        with mapped(what):
            stream = call(request, metadata=self._metadata(), timeout=timeout)
            try:
                async for reply in stream:
                    yield reply
            finally:
                stream.cancel()  # a reader that stopped early ends the call; no-op once it is done

    async def _list_images(self, filters: Collection[str]) -> list[ImageRecord]:
        """Records matching any of the filters (containerd ORs them); all records when none."""
        request = images_pb2.ListImagesRequest(filters=list(filters))
        reply = await self._unary("images.list", self._stubs.images.List, request)
        return [records.to_image(image) for image in reply.images]

    # Image records

    async def image(self, name: str) -> ImageRecord | None:
        table = await self._table()
        if table is not None:
            return table.get(name)
        request = images_pb2.GetImageRequest(name=name)
        try:
            reply = await self._unary("images.get", self._stubs.images.Get, request)
        except NotFoundInContainerd:
            return None
        return records.to_image(reply.image)

    async def images(self) -> list[ImageRecord]:
        return await self._list_images(())

    async def records_of(self, image_id: str) -> list[ImageRecord]:
        table = await self._table()
        if table is not None:
            return table.with_target(image_id)
        return await self._list_images([_target_is(image_id)])

    async def image_and_children(self, image_id: str) -> list[ImageRecord]:
        table = await self._table()
        if table is not None:
            return table.related(image_id)
        return await self._list_images([_target_is(image_id), _parent_is(image_id)])

    async def records_by_id_prefix(self, hex_prefix: str, lookalike_name: str) -> list[ImageRecord]:
        table = await self._table()
        if table is not None:
            return table.by_id_prefix(hex_prefix, lookalike_name)
        pattern = f"^sha256:{hex_prefix}[0-9a-f]{{{64 - len(hex_prefix)}}}$"
        return await self._list_images([f"name=={quote(lookalike_name)}", f"target.digest~={quote(pattern)}"])

    async def records_named(self, names: Collection[str]) -> list[ImageRecord]:
        ordered = sorted(set(names))
        found: list[ImageRecord] = []
        for start in range(0, len(ordered), _NAME_FILTER_CHUNK):
            chunk = ordered[start : start + _NAME_FILTER_CHUNK]
            found.extend(await self._list_images([f"name=={quote(n)}" for n in chunk]))
        return found

    async def create_image(self, record: ImageRecord) -> None:
        request = images_pb2.CreateImageRequest(image=records.from_image(record))
        await self._unary("images.create", self._stubs.images.Create, request)

    async def delete_image(self, record: ImageRecord, *, sync: bool) -> None:
        request = images_pb2.DeleteImageRequest(name=record.name, sync=sync)
        request.target.CopyFrom(records.from_descriptor(record.target))
        await self._unary("images.delete", self._stubs.images.Delete, request)

    async def set_image_labels(self, record: ImageRecord, labels: Mapping[str, str]) -> None:
        # The record goes with its target and labels as read: containerd 2.4 refuses (crashes on) an Update
        # whose image has no target. The mask names only these labels.
        image = records.from_image(dataclasses.replace(record, labels={**record.labels, **labels}))
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        request = images_pb2.UpdateImageRequest(image=image, update_mask=mask)
        await self._unary("images.update", self._stubs.images.Update, request)

    async def await_image(self, name: str, *, wait_seconds: float) -> ImageRecord | None:
        request = images_pb2.GetImageRequest(name=name)
        reply = await self._waiting("images.get", self._stubs.images.Get, request, wait_seconds)
        return None if reply is None else records.to_image(reply.image)

    # Content

    async def content(self, digest: str) -> ContentInfo | None:
        try:
            reply = await self._unary("content.info", self._stubs.content.Info, content_pb2.InfoRequest(digest=digest))
        except NotFoundInContainerd:
            return None
        return records.to_content(reply.info)

    async def await_content(self, digest: str, *, wait_seconds: float) -> ContentInfo | None:
        request = content_pb2.InfoRequest(digest=digest)
        reply = await self._waiting("content.info", self._stubs.content.Info, request, wait_seconds)
        return None if reply is None else records.to_content(reply.info)

    async def _list_content(self, filters: Collection[str]) -> list[ContentInfo]:
        request = content_pb2.ListContentRequest(filters=list(filters))
        found: list[ContentInfo] = []
        async for reply in self._stream("content.list", self._stubs.content.List, request):
            found.extend(records.to_content(info) for info in reply.info)
        return found

    async def all_content(self) -> list[ContentInfo]:
        return await self._list_content(())

    async def read_blob(self, digest: str) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        request = content_pb2.ReadContentRequest(digest=digest)
        try:
            async with contextlib.aclosing(self._stream("content.read", self._stubs.content.Read, request)) as stream:
                async for reply in stream:
                    total += len(reply.data)
                    if total > MAX_METADATA_BLOB:
                        raise ContainerdFailed(
                            f"blob {digest} is larger than {MAX_METADATA_BLOB} bytes",
                            {"digest": digest, "tooLarge": "true"},
                        )
                    chunks.append(reply.data)
        except NotFoundInContainerd:
            return None
        return b"".join(chunks)

    async def config_in_use(self, config: str) -> bool:
        return bool(await self._list_content([f"labels.{quote(LABEL_GC_CONTENT_PREFIX + 'config')}=={quote(config)}"]))

    async def set_content_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        info = content_pb2.Info(digest=digest, labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        request = content_pb2.UpdateRequest(info=info, update_mask=mask)
        await self._unary("content.update", self._stubs.content.Update, request)

    # Containers, tasks and snapshots

    async def containers(self) -> list[ContainerRecord]:
        request = containers_pb2.ListContainersRequest()
        reply = await self._unary("containers.list", self._stubs.containers.List, request)
        return [records.to_container(c) for c in reply.containers]

    async def task_states(self) -> dict[str, TaskState]:
        reply = await self._unary("tasks.list", self._stubs.tasks.List, tasks_pb2.ListTasksRequest())
        return {process.id: records.task_state(process.status) for process in reply.tasks}

    async def snapshots(self, snapshotter: str) -> list[SnapshotInfo]:
        request = snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter)
        found: list[SnapshotInfo] = []
        async for reply in self._stream("snapshots.list", self._stubs.snapshots.List, request):
            found.extend(records.to_snapshot(info, snapshotter) for info in reply.info)
        return found

    async def active_snapshots(self, snapshotter: str) -> dict[str, str]:
        request = snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter, filters=["kind==active"])
        found: dict[str, str] = {}
        async for reply in self._stream("snapshots.list", self._stubs.snapshots.List, request):
            found.update({info.name: info.parent for info in reply.info})
        return found

    async def snapshot_usage(self, snapshotter: str, key: str) -> int:
        request = snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key)
        reply = await self._unary("snapshots.usage", self._stubs.snapshots.Usage, request)
        return int(reply.size)

    # Leases and garbage collection

    async def lease_resources(self) -> list[LeaseResource]:
        reply = await self._unary("leases.list", self._stubs.leases.List, leases_pb2.ListRequest())
        held: list[LeaseResource] = []
        for lease in reply.leases:
            request = leases_pb2.ListResourcesRequest(id=lease.id)
            try:
                resources = await self._unary("leases.list_resources", self._stubs.leases.ListResources, request)
            except NotFoundInContainerd:
                continue  # deleted meanwhile: holds nothing
            held.extend(LeaseResource(lease=lease.id, type=r.type, id=r.id) for r in resources.resources)
        return held

    async def hold(self, digest: str) -> Hold:
        hold = Hold(await self._create_lease())
        try:
            resource = leases_pb2.Resource(id=digest, type="content")
            request = leases_pb2.AddResourceRequest(id=hold.lease_id, resource=resource)
            await self._unary("leases.addresource", self._stubs.leases.AddResource, request)
        except BaseException:
            await self.release(hold, collect=False)
            raise
        return hold

    async def release(self, hold: Hold, *, collect: bool) -> None:
        if hold.keep:
            _log.warning("lease %s kept until it expires: its content may still be needed", hold.lease_id)
            return
        try:
            await self._delete_lease(hold.lease_id, sync=collect)
        except Exception as exc:  # never fatal (also a channel closed at shutdown): the lease expires by itself
            _log.warning("lease %s not deleted (it expires by itself): %s", hold.lease_id, exc)

    async def collect_garbage(self) -> None:
        # Deleting a lease synchronously runs one collection pass and waits for it.
        await self._delete_lease(await self._create_lease(), sync=True)

    async def _create_lease(self) -> str:
        lease_id = f"imageremoval-{uuid.uuid4().hex}"
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=LEASE_EXPIRY_SECONDS)
        labels = {LABEL_LEASE_EXPIRE: expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        request = leases_pb2.CreateRequest(id=lease_id, labels=labels)
        await self._unary("leases.create", self._stubs.leases.Create, request)
        return lease_id

    async def _delete_lease(self, lease_id: str, *, sync: bool) -> None:
        request = leases_pb2.DeleteRequest(id=lease_id, sync=sync)
        await self._unary("leases.delete", self._stubs.leases.Delete, request)

    # Events (the adapter's own: the event publisher and the usage probe send them)

    async def publish_untag(self, image_id: str, name: str) -> None:
        """Publish `/imageremoval/untag`: the name that is gone and the image it named, as containerd's own
        ImageUpdate (name, labels[imageId])."""
        payload = image_pb2.ImageUpdate(name=name, labels={EVENT_IMAGE_ID_LABEL: image_id} if image_id else {})
        await self._publish(TOPIC_UNTAG, EVENT_UNTAG_TYPE_URL, payload.SerializeToString())

    async def publish_delete(self, image_id: str) -> None:
        """Publish `/imageremoval/delete`: the image ID that is gone, as containerd's own ImageDelete."""
        payload = image_pb2.ImageDelete(name=image_id)
        await self._publish(TOPIC_DELETE, EVENT_TYPE_URL, payload.SerializeToString())

    async def publish_marker(self, topic: str, token: str) -> None:
        """Publish a marker of ours (the image index's barrier): ImageDelete whose name is the token."""
        payload = image_pb2.ImageDelete(name=token).SerializeToString()
        await self._publish(topic, EVENT_TYPE_URL, payload)

    async def list_all_images(self) -> list[ImageRecord]:
        """Every record, always from containerd (how the index builds a table)."""
        return await self._list_images(())

    async def read_image(self, name: str) -> ImageRecord | None:
        """The record with this name, always from containerd (how the index applies an event)."""
        request = images_pb2.GetImageRequest(name=name)
        try:
            reply = await self._unary("images.get", self._stubs.images.Get, request)
        except NotFoundInContainerd:
            return None
        return records.to_image(reply.image)

    async def publish_empty(self, topic: str) -> None:
        """Publish an empty event (a probe: a subscriber seeing it knows it is subscribed)."""
        await self._publish(topic, "google.protobuf.Empty", b"")

    async def _publish(self, topic: str, type_url: str, value: bytes) -> None:
        # The bare type name, as containerd's typeurl writes it: every containerd consumer decodes it.
        request = events_pb2.PublishRequest(topic=topic, event=any_pb2.Any(type_url=type_url, value=value))
        await self._unary("events.publish", self._stubs.events.Publish, request)
