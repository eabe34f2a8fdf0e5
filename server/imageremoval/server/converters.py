"""Protobuf <-> domain converters for the public API, kept apart from the servicer and the domain."""

from __future__ import annotations

from collections.abc import Sequence

from imageremoval.gen.v1 import image_removal_pb2 as pb

from .config import is_valid_namespace
from .errors import InvalidArgument, Reason
from .removal import Item, ItemKind, PlatformSpec, RemovalRequest


def to_request(message: pb.RemoveImageRequest, default_namespace: str) -> RemovalRequest:
    """Validate the wire request and turn it into a RemovalRequest."""
    namespace = message.namespace or default_namespace
    if not is_valid_namespace(namespace):
        shown = namespace if len(namespace) <= 80 else namespace[:80] + "..."
        raise InvalidArgument(Reason.INVALID_NAMESPACE, f"invalid namespace {shown!r}", {"namespace": shown})
    return RemovalRequest(
        reference=message.image,
        namespace=namespace,
        force=message.force,
        prune=not message.no_prune,
        platforms=tuple(
            PlatformSpec(os=p.os, architecture=p.architecture, variant=p.variant) for p in message.platforms
        ),
        allow_missing=message.allow_missing,
        async_gc=message.async_gc,
    )


def to_response(items: Sequence[Item]) -> pb.RemoveImageResponse:
    """Items in order, each an `untagged` or a `deleted`."""
    response = pb.RemoveImageResponse()
    for item in items:
        if item.kind is ItemKind.UNTAGGED:
            response.items.add(untagged=item.value)
        else:
            response.items.add(deleted=item.value)
    return response
