"""Which images a selector chooses (Docker's prune filters plus keep-N), as pure functions over an inventory."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imageremoval.server.domain.errors import InvalidArgument, Reason
from imageremoval.server.domain.images import InventoryImage
from imageremoval.server.domain.references import parse_stored_name
from imageremoval.server.domain.usage import unused_for_at_least

MAX_SELECTOR_ITEMS = 64


@dataclass(frozen=True, slots=True)
class LabelMatch:
    """key (exists), key=value, or with negate: key absent / anything but value."""

    key: str
    value: str = ""
    negate: bool = False

    def holds(self, labels: Mapping[str, str]) -> bool:
        matched = labels.get(self.key) == self.value if self.value else self.key in labels
        return matched != self.negate

    def __str__(self) -> str:
        op = "!=" if self.negate else "="
        return f"label{op}{self.key}" + (f"={self.value}" if self.value else "")


@dataclass(frozen=True, slots=True)
class Selector:
    """The filters of `docker image prune` (and `docker images`), plus keep the latest N per repository."""

    all_unused: bool = False
    created_before_ns: int | None = None  # nanoseconds since the epoch; strictly before
    labels: tuple[LabelMatch, ...] = ()
    references: tuple[str, ...] = ()
    keep_latest: int = 0
    unused_for_ns: int | None = None  # not used for at least this long (none of unknown age or too young)

    def validate(self) -> None:
        """INVALID_ARGUMENT for what cannot be evaluated (bad globs, empty keys, negative N, too many)."""
        if self.unused_for_ns is not None and self.unused_for_ns < 0:
            raise _invalid("unused_for must not be negative")
        if self.keep_latest < 0:
            raise _invalid("keep_latest_per_repository must not be negative")
        if len(self.labels) > MAX_SELECTOR_ITEMS or len(self.references) > MAX_SELECTOR_ITEMS:
            raise _invalid(f"at most {MAX_SELECTOR_ITEMS} label and {MAX_SELECTOR_ITEMS} reference filters")
        for label in self.labels:
            if not label.key:
                raise _invalid("a label filter needs a key")
        for pattern in self.references:
            glob_regex(pattern)

    def describe(self) -> str:
        """The filters that chose an image, for a plan's `reason`."""
        parts = ["unused" if self.all_unused else "dangling and unused"]
        if self.created_before_ns is not None:
            parts.append("created before the cut-off")
        if self.unused_for_ns:
            parts.append(f"unused for at least {self.unused_for_ns // 1_000_000_000}s")
        parts.extend(str(label) for label in self.labels)
        parts.extend(f"reference={pattern}" for pattern in self.references)
        return ", ".join(parts)


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(Reason.INVALID_SELECTOR, f"invalid selector: {message}", {"detail": message[:200]})


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's path.Match as a regular expression: `*` and `?` never cross `/`; `[...]` (negated by `^`)."""
    if not pattern or len(pattern) > 256:
        raise _invalid("a reference glob must have 1 to 256 characters")
    out: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            position += 1
            if position == len(pattern):
                raise _invalid(f"bad reference glob {pattern!r}")
            out.append(re.escape(pattern[position]))
        elif char == "[":
            end = pattern.find("]", position + 2)
            if end < 0:
                raise _invalid(f"bad reference glob {pattern!r}")
            body = pattern[position + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            if not body:
                raise _invalid(f"bad reference glob {pattern!r}")
            escaped = "".join("\\" + c if c in "\\]^[" else c for c in body)
            out.append(f"[^/{escaped}]" if negate else f"[{escaped}]")
            position = end
        else:
            out.append(re.escape(char))
        position += 1
    return re.compile("".join(out))


def _reference_matches(image: InventoryImage, globs: Sequence[re.Pattern[str]]) -> bool:
    """Docker's reference filter: each familiar name with its tag, and without it."""
    candidates: list[str] = []
    for name in image.names:
        candidates.append(name)
        candidates.append(repository_of(name))
    return any(g.fullmatch(c) for g in globs for c in candidates)


def repository_of(familiar: str) -> str:
    """The repository part of a familiar name (`busybox:1.36` -> `busybox`, `a/b@sha256:...` -> `a/b`)."""
    base = familiar.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    return base[:colon] if colon > slash else base


def matches(image: InventoryImage, selector: Selector, *, now_ns: int = 0, min_age_ns: int = 0) -> bool:
    """The selector's filters (not being in use, protection or keep-N, which a plan decides); unused_for
    counts from now_ns and never matches an image younger than min_age_ns."""
    if not selector.all_unused and not image.dangling:
        return False
    if selector.unused_for_ns and not unused_for_at_least(
        image.usage, image.newest_created_ns, now_ns, min_age_ns, selector.unused_for_ns
    ):
        return False
    if selector.created_before_ns is not None and not image.created_ns < selector.created_before_ns:
        return False
    if not all(label.holds(image.labels) for label in selector.labels):
        return False
    if selector.references:
        return _reference_matches(image, [glob_regex(p) for p in selector.references])
    return True


def kept_latest(images: Sequence[InventoryImage], keep: int) -> set[str]:
    """IDs kept by keep-N: per repository, its N newest images (all of them, in use or not; ties: smaller ID)."""
    if keep <= 0:
        return set()
    by_repository: dict[str, list[InventoryImage]] = {}
    for image in images:
        for repository in {_full_repository(r.name) for r in image.records} - {""}:
            by_repository.setdefault(repository, []).append(image)
    kept: set[str] = set()
    for members in by_repository.values():
        members.sort(key=lambda i: (-i.created_ns, i.id))
        kept.update(i.id for i in members[:keep])
    return kept


def _full_repository(name: str) -> str:
    parsed = parse_stored_name(name)  # None for dangling records: they belong to no repository
    return "" if parsed is None else parsed.repository
