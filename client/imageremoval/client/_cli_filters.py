"""Docker's `--filter` syntax for images and prune, turned into an ImageSelector."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from imageremoval.gen.v1 import image_removal_pb2 as pb

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
FILTER_WORDS = ("dangling=true", "dangling=false", "label=", "label!=", "reference=", "until=", "unused-for=")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class FilterError(ValueError):
    """A filter the command cannot use (exit 2)."""


@dataclass(slots=True)
class Filters:
    """What `--filter` options asked for."""

    dangling: bool | None = None
    labels: list[pb.LabelMatch] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    until_ns: int | None = None
    unused_for_ns: int | None = None

    @property
    def narrows(self) -> bool:
        return bool(
            self.labels
            or self.references
            or self.until_ns is not None
            or self.unused_for_ns is not None
            or self.dangling is not None
        )

    def selector(self, *, all_unused: bool, keep: int = 0) -> pb.ImageSelector:
        """The selector: dangling only unless -a (or a named-image filter asks for more)."""
        selector = pb.ImageSelector(
            all_unused=all_unused if self.dangling is None else not self.dangling,
            labels=self.labels,
            references=self.references,
            keep_latest_per_repository=keep,
        )
        if self.until_ns is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromNanoseconds(self.until_ns)
            selector.created_before.CopyFrom(stamp)
        if self.unused_for_ns is not None:
            selector.unused_for.FromNanoseconds(self.unused_for_ns)
        return selector


def parse_duration(text: str) -> int:
    """A Go duration (`72h`, `1h30m`) in nanoseconds."""
    if not text or _DURATION_PART.sub("", text) != "":
        raise FilterError(f"invalid unused-for filter {text!r}: expected a duration such as 72h")
    return int(sum(float(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(text)) * 1e9)


def parse_until(text: str, now: float | None = None) -> int:
    """A Go duration before now (`24h`, `1h30m`), a Unix timestamp, an RFC 3339 time or a date; nanoseconds."""
    now = time.time() if now is None else now
    if _DURATION_PART.sub("", text) == "" and text:
        seconds = sum(float(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(text))
        return int((now - seconds) * 1e9)
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"invalid until filter {text!r}: expected a duration (24h), a timestamp or a date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def parse_filters(values: list[str]) -> Filters:
    """`dangling=true|false`, `label=k`, `label=k=v`, `label!=k`, `label!=k=v`, `reference=GLOB`, `until=...`,
    `unused-for=DURATION` (not used for at least that long, by the server's usage records)."""
    filters = Filters()
    for value in values:
        if value.startswith("label!="):
            key, _, wanted = value.removeprefix("label!=").partition("=")
            filters.labels.append(pb.LabelMatch(key=key, value=wanted, negate=True))
            continue
        name, sep, argument = value.partition("=")
        if not sep or not argument:
            raise FilterError(f"bad format of filter (expected name=value): {value!r}")
        if name == "dangling":
            if argument.lower() not in {"true", "false", "1", "0"}:
                raise FilterError(f"invalid filter 'dangling={argument}'")
            filters.dangling = argument.lower() in {"true", "1"}
        elif name == "label":
            key, _, wanted = argument.partition("=")
            filters.labels.append(pb.LabelMatch(key=key, value=wanted))
        elif name == "reference":
            filters.references.append(argument)
        elif name == "until":
            filters.until_ns = parse_until(argument)
        elif name == "unused-for":
            filters.unused_for_ns = parse_duration(argument)
        else:
            raise FilterError(f"invalid filter {name!r}")
    return filters
