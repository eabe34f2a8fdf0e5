"""RemoveImage's wire messages <-> the removal's request and items, so the servicer and the domain stay apart."""

from __future__ import annotations

from collections.abc import Sequence

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.domain.platforms import PlatformSpec
from imageremoval.server.removal.service import RemovalRequest


def to_request(
    message: pb.RemoveImageRequest,
    default_namespace: str,
    *,
    identities: Sequence[str] = (),
    client: str = "",
    deadline: float | None = None,
) -> RemovalRequest:
    """The wire request as a RemovalRequest, as sent (the remover validates it), with the default namespace
    when none is given and what the transport knows of the caller (identities, client key, deadline)."""
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
        request_id=message.request_id,
    )


_HEADROOM = 1024  # bytes kept free under the message limit (field tags, counts, the flag)


def to_response(items: Sequence[Item], max_bytes: int | None = None) -> pb.RemoveImageResponse:
    """Items in order, each an `untagged` or a `deleted`.

    Over `max_bytes`, untagged names are left out from the end until the rest fits, and `truncated` is set:
    the work was done, so the answer must still arrive rather than fail in the transport.
    """
    untagged = [i for i in items if i.kind is ItemKind.UNTAGGED]
    response = pb.RemoveImageResponse()
    budget = None if max_bytes is None else max_bytes - _HEADROOM
    deleted_size = sum(len(i.value) + 4 for i in items if i.kind is ItemKind.DELETED)
    used = deleted_size
    for item in items:
        if item.kind is ItemKind.UNTAGGED:
            used += len(item.value.encode()) + 8  # item and oneof tags and lengths, generously
            if budget is not None and used > budget:
                response.truncated = True
                continue
            response.items.add(untagged=item.value)
        else:
            response.items.add(deleted=item.value)
    if response.truncated:  # a whole answer stays exactly as before; counts come with a cut one
        response.untagged_count, response.deleted_count = len(untagged), len(items) - len(untagged)
    return response
