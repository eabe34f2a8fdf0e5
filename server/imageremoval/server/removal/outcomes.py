"""What a change whose answer was lost did: containerd is read again once it answers."""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection

from imageremoval.server.domain.errors import ContainerdUnavailable, DeadlineExceeded, OutcomeUnknown, RemovalError
from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.references import familiar_name
from imageremoval.server.domain.store import ImageStore

_log = logging.getLogger(__name__)

SETTLE_SECONDS = 20.0  # how long a removal waits for containerd to answer again before saying "unknown"

# The errors after which a change sent to containerd may or may not have been made.
LOST_ANSWER = (ContainerdUnavailable, DeadlineExceeded)


class Found(enum.Enum):
    """What the record is now, after a delete of it got no answer."""

    GONE = "gone"  # the delete happened (or someone else's did)
    PRESENT = "present"  # it still points where it did: the delete did not happen
    MOVED = "moved"  # the name now points elsewhere


async def after_lost_delete(store: ImageStore, record: ImageRecord, cause: RemovalError, wait_seconds: float) -> Found:
    """Read the record again, waiting for containerd to come back; OutcomeUnknown if it does not in time."""
    try:
        current = await store.await_image(record.name, wait_seconds=wait_seconds)
    except LOST_ANSWER as error:
        raise unknown(f"delete {familiar_name(record.name)}", record, cause, error) from None
    _log.info("containerd answers again; delete of %s %s", record.name, "happened" if current is None else "not seen")
    if current is None:
        return Found.GONE
    return Found.PRESENT if current.target.digest == record.target.digest else Found.MOVED


async def after_lost_create(store: ImageStore, record: ImageRecord, cause: RemovalError, wait_seconds: float) -> bool:
    """Whether a record whose create got no answer exists now (with that target)."""
    try:
        current = await store.await_image(record.name, wait_seconds=wait_seconds)
    except LOST_ANSWER as error:
        raise unknown(f"create {familiar_name(record.name)}", record, cause, error) from None
    return current is not None and current.target.digest == record.target.digest


async def after_lost_label_removal(
    store: ImageStore,
    record: ImageRecord,
    labels: Collection[str],
    cause: RemovalError,
    wait_seconds: float,
) -> bool:
    """Whether the labels whose removal from the record's target got no answer are gone now."""
    try:
        info = await store.await_content(record.target.digest, wait_seconds=wait_seconds)
    except LOST_ANSWER as error:
        raise unknown(f"update {record.target.digest}", record, cause, error) from None
    return info is None or not any(label in info.labels for label in labels)


def unknown(what: str, record: ImageRecord, cause: RemovalError, error: RemovalError) -> OutcomeUnknown:
    """ABORTED OUTCOME_UNKNOWN: not retryable as is; retry with the same request_id, or with allow_missing."""
    return OutcomeUnknown(
        f"containerd stopped answering during '{what}' and did not answer again in time, so whether it "
        f"happened is unknown ({cause.message}; then {error.message}); retry with the same request_id or "
        "with allow_missing",
        {
            "operation": cause.metadata.get("operation", ""),
            "imageId": record.image_id,
            "reference": familiar_name(record.name),
        },
    )
