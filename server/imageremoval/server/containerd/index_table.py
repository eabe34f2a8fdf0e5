"""One namespace's image records held in memory, indexed the ways a removal asks (name, target, ID prefix, parent)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from imageremoval.server.domain.model import LABEL_PARENT, ImageRecord

_SHA256 = "sha256:"


class ImageTable:
    """The records of one namespace as last seen; pure data, no I/O (the coherence rules live in the index).

    Every answer is the same set a containerd List with the matching filter would return from the same state:
    `related` is `target.digest==D` OR `labels."org.mobyproject.image.parent"==D`, `by_id_prefix` is
    `name==N` OR `target.digest~=^sha256:<hex>...`.
    """

    __slots__ = ("_by_name", "_by_parent", "_by_target", "_sorted_targets")

    def __init__(self, records: Iterable[ImageRecord] = ()) -> None:
        self._by_name: dict[str, ImageRecord] = {}
        self._by_target: dict[str, set[str]] = {}
        self._by_parent: dict[str, set[str]] = {}
        self._sorted_targets: list[str] = []  # the distinct sha256 targets, sorted: a prefix is a bisect
        for record in records:
            self.put(record)

    def __len__(self) -> int:
        return len(self._by_name)

    def put(self, record: ImageRecord) -> None:
        """Insert or replace the record with this name."""
        self.drop(record.name)
        self._by_name[record.name] = record
        target = record.target.digest
        names = self._by_target.get(target)
        if names is None:
            self._by_target[target] = {record.name}
            if target.startswith(_SHA256):
                bisect.insort(self._sorted_targets, target)
        else:
            names.add(record.name)
        parent = record.labels.get(LABEL_PARENT)
        if parent:
            self._by_parent.setdefault(parent, set()).add(record.name)

    def drop(self, name: str) -> None:
        """Forget the record with this name (nothing if unknown)."""
        old = self._by_name.pop(name, None)
        if old is None:
            return
        target = old.target.digest
        names = self._by_target[target]
        names.discard(name)
        if not names:
            del self._by_target[target]
            if target.startswith(_SHA256):
                at = bisect.bisect_left(self._sorted_targets, target)
                if at < len(self._sorted_targets) and self._sorted_targets[at] == target:
                    del self._sorted_targets[at]
        parent = old.labels.get(LABEL_PARENT)
        if parent:
            children = self._by_parent[parent]
            children.discard(name)
            if not children:
                del self._by_parent[parent]

    def get(self, name: str) -> ImageRecord | None:
        """The record with exactly this name."""
        return self._by_name.get(name)

    def with_target(self, digest: str) -> list[ImageRecord]:
        """Every record whose target is this digest, by name."""
        return [self._by_name[n] for n in sorted(self._by_target.get(digest, ()))]

    def related(self, digest: str) -> list[ImageRecord]:
        """The image's records and the records naming it as their parent (one List with both filters)."""
        names = self._by_target.get(digest, set()) | self._by_parent.get(digest, set())
        return [self._by_name[n] for n in sorted(names)]

    def by_id_prefix(self, hex_prefix: str, name: str) -> list[ImageRecord]:
        """The record named `name` and every record whose sha256 target starts with this hex prefix."""
        start = _SHA256 + hex_prefix
        at = bisect.bisect_left(self._sorted_targets, start)
        names: set[str] = set()
        while at < len(self._sorted_targets) and self._sorted_targets[at].startswith(start):
            names |= self._by_target[self._sorted_targets[at]]
            at += 1
        if name in self._by_name:
            names.add(name)
        return [self._by_name[n] for n in sorted(names)]

    def records(self) -> list[ImageRecord]:
        """Every record, by name."""
        return [self._by_name[n] for n in sorted(self._by_name)]
