"""Usage-tracking servers of a test's own, and the images and labels their tests build."""

from __future__ import annotations

import asyncio

from google.protobuf import field_mask_pb2
from opentelemetry.sdk.trace import TracerProvider

from imageremoval.client import ImageRemovalClient
from imageremoval.gen.containerd.services.images.v1 import images_pb2
from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.server.config import ServerConfig, UsageSettings

from .images import Layer, Manifest, file_layer, manifest
from .interceptors import RecordingInterceptor
from .server import ServerThread
from .store import Store
from .waiting import eventually

DAY_NS = 86_400 * 1_000_000_000


def lib(name: str) -> str:
    return f"docker.io/library/{name}"


class Tracked:
    """A server of its own with usage tracking tuned for one test, and a client to it."""

    def __init__(self, address: str, usage: UsageSettings, meter_provider: object = None, **config: object) -> None:
        self.recorder = RecordingInterceptor()
        options = {"meter_provider": meter_provider} if meter_provider is not None else {}
        self.thread = ServerThread(
            ServerConfig(listen="127.0.0.1:0", usage=usage, **config),  # type: ignore[arg-type]
            address,
            TracerProvider(),
            containerd_interceptors=[self.recorder],
            **options,
        )
        self.client = ImageRemovalClient(f"127.0.0.1:{self.thread.port}")
        self.closed = False
        tracker = self.thread.app.tracker
        if tracker is not None:  # events after this point are seen; the first sweep is over
            self.thread.call(asyncio.wait_for(tracker.subscribed.wait(), 30))
            self.thread.call(asyncio.wait_for(tracker.swept.wait(), 30))

    def image(self, ns: str, image_id: str) -> pb.Image | None:
        return next((i for i in self.client.list_images(namespace=ns) if i.id == image_id), None)

    def image_with(self, ns: str, image_id: str, field: str) -> pb.Image:
        """The image once the server has recorded `field` (first_seen or last_used)."""

        def probe() -> pb.Image | None:
            image = self.image(ns, image_id)
            return image if image is not None and image.HasField(field) else None

        return eventually(probe, f"{field} of {image_id}")

    def sweep(self, ns: str) -> None:
        assert self.thread.app.tracker is not None
        self.thread.call(self.thread.app.tracker.sweep([ns]))

    def label_writes(self) -> int:
        return sum(1 for m, _ in self.recorder.calls if m.endswith("/containerd.services.images.v1.Images/Update"))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client.close()
        self.thread.stop()


def runnable(busybox: Layer, note: str) -> Manifest:
    return manifest((busybox, file_layer("note.txt", note.encode())), note=note)


def own_update(store: Store, ns: str, name: str, labels: dict[str, str]) -> None:
    """Set labels as another writer would: labels-only mask, the whole record sent (containerd 2.4 needs its
    target)."""
    record = store.images.Get(images_pb2.GetImageRequest(name=name), metadata=store.md(ns)).image
    record.labels.update(labels)
    store.images.Update(
        images_pb2.UpdateImageRequest(
            image=record, update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
        ),
        metadata=store.md(ns),
    )
