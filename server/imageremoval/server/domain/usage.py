"""When an image was first seen and last used, kept as labels on its records, and the age rules built on them."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from imageremoval.server.domain.model import ImageRecord

# Our labels on image records (containerd keeps them with the record: they survive restarts of the server,
# containerd and the node, and every replica reads the same). Values: RFC 3339 UTC, nanoseconds dropped.
LABEL_PREFIX = "imageremoval.io/"
LABEL_FIRST_SEEN = LABEL_PREFIX + "first-seen"
LABEL_LAST_USED = LABEL_PREFIX + "last-used"
_SECOND = 1_000_000_000


class AgeBasis(enum.Enum):
    """What an image's age is measured from (the API's AgeBasis)."""

    UNKNOWN = "UNKNOWN"
    OBSERVED_USE = "OBSERVED_USE"
    FIRST_SEEN_ONLY = "FIRST_SEEN_ONLY"


@dataclass(frozen=True, slots=True)
class Usage:
    """An image's recorded usage: the earliest first-seen and the latest last-used over its records."""

    first_seen_ns: int | None = None
    last_used_ns: int | None = None

    @property
    def basis(self) -> AgeBasis:
        if self.last_used_ns is not None:
            return AgeBasis.OBSERVED_USE
        if self.first_seen_ns is not None:
            return AgeBasis.FIRST_SEEN_ONLY
        return AgeBasis.UNKNOWN

    @property
    def reference_ns(self) -> int | None:
        """The time the age counts from: last used, else first seen; None when unknown."""
        return self.last_used_ns if self.last_used_ns is not None else self.first_seen_ns


def format_stamp(nanoseconds: int) -> str:
    """A label value: RFC 3339 in UTC, whole seconds."""
    return datetime.fromtimestamp(nanoseconds // _SECOND, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(value: str) -> int | None:
    """A label value back in nanoseconds; None when it is not one of ours (a hand-edited label is ignored)."""
    try:
        stamp = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(stamp.timestamp()) * _SECOND


def usage_of(records: Iterable[ImageRecord]) -> Usage:
    """The usage the records carry."""
    first: list[int] = []
    last: list[int] = []
    for record in records:
        for key, into in ((LABEL_FIRST_SEEN, first), (LABEL_LAST_USED, last)):
            stamp = parse_stamp(record.labels.get(key, ""))
            if stamp is not None:
                into.append(stamp)
    return Usage(first_seen_ns=min(first, default=None), last_used_ns=max(last, default=None))


def without_usage(labels: Mapping[str, str]) -> dict[str, str]:
    """An image's labels as users set them: ours are shown as first_seen/last_used, not as labels."""
    return {k: v for k, v in labels.items() if not k.startswith(LABEL_PREFIX)}


def too_young(usage: Usage, newest_record_ns: int, now_ns: int, min_age_ns: int) -> bool:
    """Never old: of unknown age, or first seen or (any record) created less than the minimum age ago."""
    if usage.first_seen_ns is None or usage.reference_ns is None:
        return True
    return now_ns - usage.first_seen_ns < min_age_ns or now_ns - newest_record_ns < min_age_ns


def unused_for_at_least(usage: Usage, newest_record_ns: int, now_ns: int, min_age_ns: int, span_ns: int) -> bool:
    """ImageSelector.unused_for: not used for at least span_ns, and not too young."""
    if too_young(usage, newest_record_ns, now_ns, min_age_ns):
        return False
    assert usage.reference_ns is not None
    return now_ns - usage.reference_ns >= span_ns
