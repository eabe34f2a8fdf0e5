"""The record-level changes every removal path makes: delete one record, create a dangling one, collect."""

from __future__ import annotations

import logging

from imageremoval.server.domain.errors import (
    AlreadyExistsInContainerd,
    ImageChanged,
    NotFoundInContainerd,
    RemovalError,
)
from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.references import dangling_name, familiar_name
from imageremoval.server.domain.store import ImageStore
from imageremoval.server.removal.call import Call
from imageremoval.server.removal.outcomes import LOST_ANSWER, Found, after_lost_create, after_lost_delete

_log = logging.getLogger(__name__)
_DELETE_ATTEMPTS = 3  # a delete whose answer was lost and that did not happen is sent again, this often


async def delete_record(call: Call, record: ImageRecord, *, sync: bool) -> bool:
    """Delete one record (passing its target: compare-and-delete on containerd 1.7+); False if it was gone.

    When containerd stops answering after the delete was sent, the record is read again once it answers:
    gone means the delete happened; still there means it did not, and it is sent again; no answer in time
    is OUTCOME_UNKNOWN, never a retryable UNAVAILABLE.
    """
    request = call.request
    if request.validate_only:
        return True  # the checks all ran; this is the change a validation does not make
    cause: RemovalError | None = None
    for _ in range(_DELETE_ATTEMPTS):
        try:
            await call.store.delete_image(record, sync=sync)
        except NotFoundInContainerd:
            # containerd 2.x also answers NotFound when the name now points elsewhere (its target check):
            # that name is not gone, and must not be reported as deleted.
            if request.allow_missing and await call.store.image(record.name) is None:
                if sync:
                    await collect_garbage(call.store)  # the wait this delete would have done
                return False  # a concurrent remover got there first: that is what we wanted
            raise ImageChanged(
                f"image {familiar_name(record.name)} was removed or moved by someone else during removal",
                {"imageId": record.image_id, "reference": familiar_name(record.name)},
            ) from None
        except LOST_ANSWER as lost:
            cause = lost
            found = await after_lost_delete(call.store, record, lost, call.services.settle_seconds)
            if found is Found.GONE:
                return True
            if found is Found.MOVED:
                raise ImageChanged(
                    f"image {familiar_name(record.name)} was moved by someone else during removal",
                    {"imageId": record.image_id, "reference": familiar_name(record.name)},
                ) from None
            continue  # still there: the delete did not happen
        return True
    assert cause is not None
    cause.verified_unchanged = True  # read back each time: the record is still there
    raise cause


async def create_dangling(call: Call, record: ImageRecord) -> ImageRecord | None:
    """Create the image's dangling record; the record if this call created it, None if it existed."""
    dangling = ImageRecord(name=dangling_name(record.image_id), target=record.target, labels=record.labels)
    try:
        await call.store.create_image(dangling)
    except AlreadyExistsInContainerd:
        return None  # unique per digest: whoever made it, it holds the same content
    except LOST_ANSWER as cause:
        if not await after_lost_create(call.store, dangling, cause, call.services.settle_seconds):
            await call.store.create_image(dangling)  # it did not happen: once more
    call.progress.notes.append(f"created {dangling.name}")
    return dangling


async def collect_garbage(store: ImageStore) -> None:
    """One synchronous collection pass; a failure is logged, never fatal (containerd collects later)."""
    try:
        await store.collect_garbage()
    except RemovalError as exc:
        _log.warning("garbage collection failed: %s", exc.message)
