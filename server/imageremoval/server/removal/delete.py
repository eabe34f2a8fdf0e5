"""Delete an image: its records go while its content is held, so a user appearing meanwhile loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence

from opentelemetry import trace

from imageremoval.server.domain.conflicts import check_conflicts
from imageremoval.server.domain.container_users import ContainerUsers
from imageremoval.server.domain.content import ImageContent
from imageremoval.server.domain.docker_rules import DeleteImage, Resolution
from imageremoval.server.domain.errors import AlreadyExistsInContainerd, ImageChanged, ImageConflict, RemovalError
from imageremoval.server.domain.model import LABEL_PARENT, ImageRecord, Item, ItemKind, TaskState
from imageremoval.server.domain.references import familiar_name, is_dangling, short_id
from imageremoval.server.domain.store import Hold
from imageremoval.server.removal.call import Call
from imageremoval.server.removal.newcomers import Seen, newcomers, pending_users, seen_before
from imageremoval.server.removal.parents import prunable_parents, prune
from imageremoval.server.removal.reading import current, same_records, walk
from imageremoval.server.removal.record_changes import create_dangling, delete_record
from imageremoval.server.removal.snapshot_release import release_snapshots
from imageremoval.server.removal.untag import soft_untag
from imageremoval.server.telemetry import names as t

_log = logging.getLogger(__name__)


async def delete(
    call: Call, resolution: Resolution, decision: DeleteImage, containers: asyncio.Task[ContainerUsers]
) -> None:
    """Walk and check, then delete the records under a lease of ours; then prune parents, release snapshots."""
    request, progress = call.request, call.progress
    # The image's content goes under a lease of ours while it is walked and checked.
    # A validation changes nothing, not even a lease.
    holding = None if request.validate_only else asyncio.create_task(call.store.hold(resolution.all[0].target.digest))
    hold: Hold | None = None
    collect = False
    try:
        walking = asyncio.create_task(walk(call, resolution))
        checking = asyncio.create_task(_check(call, resolution, decision, walking, containers))
        try:
            content = await walking
            soft, parents, users, using = await checking
        except BaseException:
            for task in (walking, checking):
                task.cancel()
            await asyncio.gather(walking, checking, return_exceptions=True)  # both retrieved: no stray warnings
            raise
        call.checkpoint()
        with call.phase(t.SPAN_DELETE) as span:
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            if soft is not None:
                span.set_attribute(t.ATTR_ACTION, "soft-untag")
                progress.action = t.ACTION_UNTAG
                await soft_untag(call, resolution, soft)
                return
            span.set_attribute(t.ATTR_ACTION, t.ACTION_DELETE)
            hold = await holding if holding is not None else None
            collect = not request.async_gc and not parents
            before = await seen_before(call.store, users, using, content)
            if before.pending and not request.force:
                # A root filesystem prepared on its layers, or an unpack of them: a container is coming.
                single = dataclasses.replace(decision, check_multiple=False)
                check_conflicts(resolution, single, pending_users(before), force=False)
            # The re-read comes last, right before the delete: on containerd 1.6, which ignores the delete's
            # expected target, a tag re-pointed after it is still deleted, so keep that short.
            records = await current(call, resolution)
            try:
                parents = await _delete_held(call, resolution, decision, content, before, records, parents)
            finally:
                if hold is not None:
                    hold.keep = progress.keep_content
    finally:
        # Released (with the one collection waited for) before parents are pruned, or once anything failed.
        if hold is None and holding is not None:
            done = (await asyncio.gather(holding, return_exceptions=True))[0]
            hold = done if isinstance(done, Hold) else None
        if hold is not None and collect:
            await call.store.release(hold, collect=True)
        elif hold is not None:  # nothing to wait for: released after the reply (drained on shutdown)
            call.services.later(call.store.release(hold, collect=False))
    if parents:
        with call.phase(t.SPAN_PRUNE_PARENTS) as span:
            pruning = time.perf_counter()
            await prune(call, parents)
            span.set_attribute(t.ATTR_PARENTS, len(parents))
            if call.services.recorder.metrics is not None:
                call.services.recorder.metrics.prune(time.perf_counter() - pruning)
    if not request.async_gc and not request.validate_only:
        with call.phase(t.SPAN_RELEASE_SNAPSHOTS) as span:
            released = await release_snapshots(call, content)
            span.set_attribute(t.ATTR_CONFIGS_RELEASED, released)


async def _check(
    call: Call,
    resolution: Resolution,
    decision: DeleteImage,
    walking: asyncio.Task[ImageContent],
    containers: asyncio.Task[ContainerUsers],
) -> tuple[ImageRecord | None, list[Resolution], ContainerUsers, list[tuple[str, TaskState]]]:
    """check-conflicts: containers (listed while resolving), then the prunable parent chain."""
    with call.phase(t.SPAN_CHECK_CONFLICTS) as span:
        span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
        users = await containers
        span.set_attribute(t.ATTR_CONTAINERS_CHECKED, len(users.containers))
        content = await walking
        names = {r.name for r in resolution.all}
        using = await users.users(resolution.image_id, names, content)
        soft = check_conflicts(resolution, decision, using, force=call.request.force)
        parents = [] if soft or not call.request.prune else await prunable_parents(call, resolution, users)
        span.set_attribute(t.ATTR_PARENTS, len(parents))
        return soft, parents, users, using


async def _delete_held(
    call: Call,
    resolution: Resolution,
    decision: DeleteImage,
    content: ImageContent,
    before: Seen,
    records: Sequence[ImageRecord],
    parents: list[Resolution],
) -> list[Resolution]:
    """Delete the records while the content is held; put them back if a user appeared meanwhile.

    `records`: the image's and its children's, read right before the first change. Returns the parents still
    to prune (none when the image's content stays as a dangling record).
    """
    request, progress = call.request, call.progress
    same_records(resolution, records, decision.records, exact=True)
    children = [r for r in records if r.labels.get(LABEL_PARENT) == resolution.image_id]
    named = [r for r in decision.records if not is_dangling(r.name)]
    # The last names, given by name, of an image others build on: its content stays as a dangling
    # record (kept if it exists), and so do its parents, which are then not pruned. Nothing is
    # reported deleted, since a record remains. By ID the image goes, as with Docker.
    keep_dangling = bool(children and named) and decision.by_name is not None
    doomed = named if keep_dangling else list(decision.records)
    if keep_dangling:
        parents = []
        progress.action = t.ACTION_UNTAG
        trace.get_current_span().set_attribute(t.ATTR_ACTION, t.ACTION_UNTAG)
    call.commit()
    keep = keep_dangling and not request.validate_only
    created = await create_dangling(call, named[0]) if keep else None
    deleted: list[ImageRecord] = []
    for record in doomed:
        if await delete_record(call, record, sync=False):
            deleted.append(record)
            if not is_dangling(record.name):
                progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))
    appeared = await newcomers(call.store, resolution.image_id, {r.name for r in resolution.all}, content, before)
    if appeared:
        await _refuse_after_delete(call, resolution, decision, appeared, deleted, created)
    if not deleted:
        progress.missing = True  # someone else removed every record first
    elif not keep_dangling:
        # Only the caller whose delete removed a record reports the image deleted.
        progress.items.append(Item(ItemKind.DELETED, resolution.image_id, resolution.image_id))
    return parents


async def _refuse_after_delete(
    call: Call,
    resolution: Resolution,
    decision: DeleteImage,
    appeared: list[tuple[str, TaskState]],
    deleted: list[ImageRecord],
    created: ImageRecord | None,
) -> None:
    """A user appeared while the records were gone: the same conflict rules decide; when they refuse, the
    records are put back (the content was held all along) and the call fails with nothing changed."""
    progress = call.progress
    refusal: RemovalError | None = None
    try:
        soft = check_conflicts(
            resolution, dataclasses.replace(decision, check_multiple=False), appeared, force=call.request.force
        )
    except ImageConflict as conflict:
        refusal = conflict
    else:
        if soft is not None:  # force by name: a retry frees the name and keeps the content for it
            refusal = ImageChanged(
                f"container {short_id(appeared[0][0])} started using image {resolution.display} during the "
                "removal; nothing was removed; try again",
                {"imageId": resolution.image_id, "reference": resolution.display, "container": appeared[0][0]},
            )
    if refusal is None:
        return
    progress.keep_content = True  # until the records are back, the lease must outlive us
    for record in deleted:
        with contextlib.suppress(AlreadyExistsInContainerd):
            await call.store.create_image(record)
    restored = {familiar_name(r.name) for r in deleted}
    progress.items = [i for i in progress.items if not (i.kind is ItemKind.UNTAGGED and i.value in restored)]
    if created is not None:
        await delete_record(call, created, sync=False)
        progress.notes = [n for n in progress.notes if n != f"created {created.name}"]
    progress.keep_content = False
    _log.info("a user of %s appeared during the removal (%s); records restored", resolution.image_id, appeared[0][0])
    raise refusal
