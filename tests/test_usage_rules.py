"""The pure usage rules: label values, which age an image has, the minimum age, LRU order, statvfs arithmetic."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace

import pytest

from imageremoval.server.cleaning.disk import DiskUsage
from imageremoval.server.cleaning.space_reclaim import _pick
from imageremoval.server.domain.model import Descriptor, ImageRecord
from imageremoval.server.domain.usage import (
    LABEL_FIRST_SEEN,
    LABEL_LAST_USED,
    AgeBasis,
    Usage,
    format_stamp,
    parse_stamp,
    too_young,
    unused_for_at_least,
    usage_of,
    without_usage,
)

S = 1_000_000_000
NOW = 1_800_000_000 * S
TARGET = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "a" * 64, 1)


def record(name: str, **labels: str) -> ImageRecord:
    return ImageRecord(name=name, target=TARGET, labels=labels)


def test_label_values_round_trip_in_whole_seconds_and_foreign_values_are_ignored() -> None:
    assert format_stamp(NOW + 999) == "2027-01-15T08:00:00Z"
    assert parse_stamp(format_stamp(NOW)) == NOW
    assert parse_stamp("yesterday") is None and parse_stamp("") is None


def test_usage_is_the_earliest_first_seen_and_latest_last_used_over_the_records() -> None:
    usage = usage_of(
        [
            record("a", **{LABEL_FIRST_SEEN: format_stamp(NOW - 50 * S), LABEL_LAST_USED: format_stamp(NOW - 9 * S)}),
            record("b", **{LABEL_FIRST_SEEN: format_stamp(NOW - 90 * S), LABEL_LAST_USED: format_stamp(NOW - 5 * S)}),
        ]
    )
    assert usage == Usage(first_seen_ns=NOW - 90 * S, last_used_ns=NOW - 5 * S)
    assert usage.basis is AgeBasis.OBSERVED_USE and usage.reference_ns == NOW - 5 * S
    assert usage_of([record("c", **{LABEL_FIRST_SEEN: format_stamp(NOW)})]).basis is AgeBasis.FIRST_SEEN_ONLY
    assert usage_of([record("d")]).basis is AgeBasis.UNKNOWN


def test_our_labels_are_not_shown_among_the_users_labels() -> None:
    assert without_usage({LABEL_FIRST_SEEN: "x", LABEL_LAST_USED: "y", "team": "a"}) == {"team": "a"}


def test_an_unknown_age_is_never_old() -> None:
    assert too_young(Usage(), 0, NOW, 0)
    assert not unused_for_at_least(Usage(), 0, NOW, 0, 1)


def test_first_seen_or_a_record_created_within_the_minimum_age_is_too_young() -> None:
    old = Usage(first_seen_ns=NOW - 10_000 * S, last_used_ns=NOW - 9_000 * S)
    assert not too_young(old, NOW - 10_000 * S, NOW, 120 * S)
    assert too_young(old, NOW - 60 * S, NOW, 120 * S)  # re-tagged or pulled a minute ago
    assert too_young(Usage(first_seen_ns=NOW - 60 * S), NOW - 10_000 * S, NOW, 120 * S)


def test_unused_for_counts_from_last_use_else_first_seen() -> None:
    used = Usage(first_seen_ns=NOW - 100 * S, last_used_ns=NOW - 10 * S)
    assert unused_for_at_least(used, 0, NOW, 0, 10 * S) and not unused_for_at_least(used, 0, NOW, 0, 11 * S)
    seen = Usage(first_seen_ns=NOW - 100 * S)
    assert unused_for_at_least(seen, 0, NOW, 0, 100 * S) and not unused_for_at_least(seen, 0, NOW, 0, 101 * S)


def test_bytes_over_a_percentage_get_the_filesystem_strictly_below_it() -> None:
    disk = DiskUsage(used_bytes=80, size_bytes=100)
    assert disk.percent == 80.0
    assert disk.over(50.0) == 31 and DiskUsage(49, 100).over(50.0) == 0
    assert DiskUsage(used_bytes=80 - disk.over(50.0), size_bytes=100).percent < 50.0


def test_reclaim_picks_the_shortest_least_recently_used_prefix_that_frees_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Graph:
        def size(self, nodes: Iterable[str]) -> int:
            return 10 * len(list(nodes))

    def each_image_frees_its_own_node(_graph: object, _closures: object, removed: list[str]) -> dict[str, list[int]]:
        return {r: [] for r in removed}

    monkeypatch.setattr("imageremoval.server.cleaning.space_reclaim.reclaimable", each_image_frees_its_own_node)
    inventory = SimpleNamespace(graph=Graph(), closures={})
    ordered = [SimpleNamespace(id=f"i{n}") for n in range(7)]
    assert _pick(inventory, ordered, 25) == ["i0", "i1", "i2"]  # type: ignore[arg-type]
    assert _pick(inventory, ordered, 10) == ["i0"]  # type: ignore[arg-type]
    assert _pick(inventory, ordered, 1000) == [f"i{n}" for n in range(7)]  # type: ignore[arg-type]
