"""Protobuf <-> domain converters for the public API, kept apart from the servicer and the domain."""

from __future__ import annotations

from collections.abc import Sequence

from imageremoval.gen.v1 import image_removal_pb2 as pb

from .removal import Item, ItemKind, PlatformSpec, RemovalRequest


def to_request(
    message: pb.RemoveImageRequest,
    default_namespace: str,
    *,
    identities: Sequence[str] = (),
    client: str = "",
    deadline: float | None = None,
) -> RemovalRequest:
    """Validate the wire request and turn it into a RemovalRequest."""
    return RemovalRequest(
        reference=message.image,
        namespace=message.namespace or default_namespace,
        force=message.force,
        prune=not message.no_prune,
        platforms=tuple(
            PlatformSpec(os=p.os, architecture=p.architecture, variant=p.variant) for p in message.platforms
        ),
        allow_missing=message.allow_missing,
        async_gc=message.async_gc,
        validate_only=message.validate_only,
        identities=tuple(identities),
        client=client,
        deadline=deadline,
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
