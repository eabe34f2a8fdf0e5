"""Platform-selective removal (Docker API 1.50): drop an index's references to some manifests, then collect."""

from __future__ import annotations

import asyncio

from imageremoval.server.domain.container_users import ContainerUsers
from imageremoval.server.domain.content import ImageContent, PlatformManifest
from imageremoval.server.domain.docker_rules import Resolution
from imageremoval.server.domain.errors import (
    Conflict,
    ImageChanged,
    ImageConflict,
    InvalidArgument,
    PlatformNotFound,
    Reason,
)
from imageremoval.server.domain.model import LABEL_GC_CONTENT_PREFIX, Item, ItemKind, TaskState
from imageremoval.server.domain.platforms import choose
from imageremoval.server.domain.references import short_id
from imageremoval.server.removal.call import Call
from imageremoval.server.removal.outcomes import LOST_ANSWER, after_lost_label_removal
from imageremoval.server.removal.reading import recheck, walk
from imageremoval.server.telemetry import names as t


async def remove_platforms(call: Call, resolution: Resolution, containers: asyncio.Task[ContainerUsers]) -> None:
    """Remove the requested platforms of a multi-platform image, unless a running container uses one."""
    request = call.request
    call.services.policy.check_protected(resolution.all, force=request.force, display=resolution.display)
    content = await walk(call, resolution)
    if content.index is None:
        raise InvalidArgument(
            Reason.INVALID_PLATFORM,
            f"{resolution.display} is not a multi-platform image; remove it without platforms",
            {"imageId": resolution.image_id},
        )
    try:
        chosen = choose(content, request.platforms, display=resolution.display, image_id=resolution.image_id)
    except PlatformNotFound:
        if not request.allow_missing:
            raise
        call.progress.missing = True
        return
    with call.phase(t.SPAN_CHECK_CONFLICTS) as span:
        users = await containers
        span.set_attribute(t.ATTR_CONTAINERS_CHECKED, len(users.containers))
        using = await users.users(
            resolution.image_id,
            {r.name for r in resolution.all},
            content,
            manifests={m.descriptor.digest for m in chosen},
        )
        running = [c for c, s in using if s is TaskState.RUNNING]
        if running:
            raise ImageConflict(
                reference=resolution.display,
                conflict=Conflict.RUNNING_CONTAINER,
                forceable=False,
                image_id=resolution.image_id,
                container=running[0],
                detail=f"platform is being used by running container {short_id(running[0])}",
            )
    call.checkpoint()
    await _drop_platforms(call, resolution, content, chosen)


async def _drop_platforms(
    call: Call, resolution: Resolution, content: ImageContent, chosen: list[PlatformManifest]
) -> None:
    """Drop the index's garbage-collection references to these manifests, then collect once.

    The collector then frees exactly the blobs no other image references, which a direct Content.Delete
    could not know.
    """
    assert content.index is not None
    request, progress = call.request, call.progress
    index = content.index.digest
    with call.phase(t.SPAN_DELETE) as span:
        span.set_attribute(t.ATTR_ACTION, "platforms")
        await recheck(call, resolution, resolution.all, exact=False)
        info = await call.store.content(index)
        if info is None:
            raise ImageChanged(
                f"the index of {resolution.display} is gone; nothing was removed", {"imageId": resolution.image_id}
            )
        removed = {m.descriptor.digest for m in chosen}
        labels = {k: "" for k, v in info.labels.items() if k.startswith(LABEL_GC_CONTENT_PREFIX) and v in removed}
        call.commit()
        if labels and not request.validate_only:
            try:
                await call.store.set_content_labels(index, labels)
            except LOST_ANSWER as cause:  # read back once containerd answers
                record = resolution.all[0]
                if not await after_lost_label_removal(call.store, record, labels, cause, call.services.settle_seconds):
                    await call.store.set_content_labels(index, labels)
            progress.notes.append(f"dropped {len(labels)} references of index {index}")
        if not request.async_gc and not request.validate_only:
            await call.store.collect_garbage()
        progress.items.extend(Item(ItemKind.DELETED, m.descriptor.digest, resolution.image_id) for m in chosen)
        span.set_attribute(t.ATTR_ITEMS, len(progress.items))
