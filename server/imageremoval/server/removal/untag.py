"""Untag: remove names of an image that keeps others, or (force, in use) its last name but not its content."""

from __future__ import annotations

from imageremoval.server.domain.docker_rules import Resolution, Untag
from imageremoval.server.domain.model import ImageRecord, Item, ItemKind
from imageremoval.server.domain.references import familiar_name, is_dangling
from imageremoval.server.removal.call import Call
from imageremoval.server.removal.reading import current, same_records
from imageremoval.server.removal.record_changes import create_dangling, delete_record
from imageremoval.server.telemetry import names as t


async def untag(call: Call, resolution: Resolution, decision: Untag) -> None:
    """Delete the named records; the image keeps its other names, so its content stays."""
    with call.phase(t.SPAN_DELETE) as span:
        span.set_attribute(t.ATTR_ACTION, t.ACTION_UNTAG)
        span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
        # Nothing was read since the resolve's List of the image's records, so that read is the check
        # before the first change; each delete still carries its expected target.
        call.commit()
        # Untagging never frees content while other names remain, so no delete waits for collection.
        for record in decision.records:
            if await delete_record(call, record, sync=False) and not is_dangling(record.name):
                call.progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))
        span.set_attribute(t.ATTR_ITEMS, len(call.progress.items))


async def soft_untag(call: Call, resolution: Resolution, record: ImageRecord) -> None:
    """Force on the last name of an image a container uses: free the name, keep the content (as Docker's
    softImageDelete: a dangling record when no other record would hold it)."""
    same_records(resolution, await current(call, resolution), [record], exact=True)
    call.commit()
    if len(resolution.all) == 1 and not call.request.validate_only:
        await create_dangling(call, record)
    if await delete_record(call, record, sync=False):
        call.progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))
