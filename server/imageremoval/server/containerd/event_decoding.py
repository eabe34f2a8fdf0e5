"""containerd's event payloads -> StoreEvent: the topics the usage tracker follows, decoded in one place."""

from __future__ import annotations

from google.protobuf import any_pb2

from imageremoval.gen.containerd.events import image_pb2, usage_pb2
from imageremoval.server.domain.store import StoreEvent

TOPIC_INDEX_BARRIER = "/imageremoval-index/barrier"  # the image index's marker (outside /imageremoval/, our API)


def decode_event(namespace: str, topic: str, payload: any_pb2.Any) -> StoreEvent:
    """The event; topics without a payload we read (a probe, any other) carry only namespace and topic."""
    if topic == "/images/create":
        image = usage_pb2.ImageCreate.FromString(payload.value)
        return StoreEvent(namespace, topic, image=image.name, labels=dict(image.labels))
    if topic == "/images/update":
        return StoreEvent(namespace, topic, image=image_pb2.ImageUpdate.FromString(payload.value).name)
    if topic == "/images/delete" or topic == TOPIC_INDEX_BARRIER:  # the barrier's token travels as the name
        return StoreEvent(namespace, topic, image=image_pb2.ImageDelete.FromString(payload.value).name)
    if topic == "/containers/create":
        created = usage_pb2.ContainerCreate.FromString(payload.value)
        return StoreEvent(namespace, topic, container=created.id, image=created.image)
    if topic == "/containers/delete":
        return StoreEvent(namespace, topic, container=usage_pb2.ContainerDelete.FromString(payload.value).id)
    if topic == "/tasks/start":
        return StoreEvent(namespace, topic, container=usage_pb2.TaskStart.FromString(payload.value).container_id)
    if topic == "/tasks/exit":
        return StoreEvent(namespace, topic, container=usage_pb2.TaskExit.FromString(payload.value).container_id)
    return StoreEvent(namespace, topic)
