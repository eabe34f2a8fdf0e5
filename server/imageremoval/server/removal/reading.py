"""The reads a removal makes as phases of its own: the walk of the content, and the re-read before a change."""

from __future__ import annotations

from collections.abc import Sequence

from imageremoval.server.domain.content import ImageContent
from imageremoval.server.domain.docker_rules import Resolution
from imageremoval.server.domain.errors import ImageChanged
from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.references import familiar_name
from imageremoval.server.removal.call import Call
from imageremoval.server.removal.content_walk import walk_present
from imageremoval.server.telemetry import names as t


async def walk(call: Call, resolution: Resolution) -> ImageContent:
    """The image's present content. Never skipped: a stopped dockerd container has no container record,
    only snapshots above the image's layers, which the walk's chain IDs find."""
    with call.phase(t.SPAN_WALK) as span:
        content = await walk_present(call.store, resolution.all[0].target)
        span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
        span.set_attribute(t.ATTR_BLOBS_WALKED, content.blob_count)
        span.set_attribute(t.ATTR_BYTES, content.size)
        return content


async def current(call: Call, resolution: Resolution) -> list[ImageRecord]:
    """The image's records and its children's, read right before the first change."""
    return await call.store.image_and_children(resolution.image_id)


def same_records(
    resolution: Resolution, current: Sequence[ImageRecord], records: Sequence[ImageRecord], *, exact: bool
) -> None:
    """Right before the first change: the records still point where we resolved them; with `exact`, no new
    name points at the image either."""
    names = {r.name for r in current if r.image_id == resolution.image_id}
    moved = [r.name for r in records if r.name not in names]
    added = sorted(names - {r.name for r in resolution.all}) if exact else []
    if moved or added:
        changed = familiar_name((moved or added)[0])
        raise ImageChanged(
            f"image {resolution.display} changed during removal ({'moved' if moved else 'new'} reference "
            f"{changed}); nothing was removed",
            {"imageId": resolution.image_id, "reference": changed},
        )


async def recheck(call: Call, resolution: Resolution, records: Sequence[ImageRecord], *, exact: bool) -> None:
    """Read the image's records again and refuse if these moved (IMAGE_CHANGED, nothing changed)."""
    same_records(resolution, await call.store.records_of(resolution.image_id), records, exact=exact)
