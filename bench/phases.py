"""`--phases`: where a removal's time goes, from the server's own spans (console exporter) in its log.

The server writes one line per finished span when OTEL_TRACES_EXPORTER=console:
`trace=<id> span=<id> parent=<id> <name> <duration>ms <status> key=value...`. Exporting costs the server time,
so a `--phases` run explains the headline figures but is not one of them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .report import number
from .stats import summarize

ROOT = "/imageremoval.v1.ImageRemovalService/RemoveImage"
_SPAN = re.compile(r"^trace=(?P<trace>\w+) span=\w+ parent=\w+ (?P<name>\S+) (?P<ms>[\d.]+)ms\b")


@dataclass(frozen=True, slots=True)
class Phase:
    """One span name across the removals: how many per removal and how long each took."""

    name: str
    per_removal: float
    p50_ms: float
    p95_ms: float

    def as_dict(self) -> dict[str, float | str]:
        """JSON form."""
        return {
            "name": self.name,
            "per_removal": round(self.per_removal, 2),
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
        }


def phases(lines: Iterable[str]) -> list[Phase]:
    """Per span name, over the traces of RemoveImage calls; the call itself first, then by time spent."""
    by_trace: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for line in lines:
        match = _SPAN.match(line)
        if match:
            by_trace[match["trace"]].append((match["name"], float(match["ms"])))
    removals = [spans for spans in by_trace.values() if any(name == ROOT for name, _ in spans)]
    if not removals:
        return []
    durations: dict[str, list[float]] = defaultdict(list)
    for spans in removals:
        for name, ms in spans:
            durations[name].append(ms)
    found = [
        Phase(name, len(values) / len(removals), summarize(values).p50, summarize(values).p95)
        for name, values in durations.items()
    ]
    return sorted(found, key=lambda p: (p.name != ROOT, -p.per_removal * p.p50_ms))


def from_log(path: Path) -> list[Phase]:
    """The phases found in a server log (empty when it exported no spans)."""
    if not path.exists():
        return []
    with path.open(errors="replace") as log:
        return phases(log)


def table(found: list[Phase]) -> str:
    """Plain-text table of the phases."""
    rows = [("span", "per removal", "p50 ms", "p95 ms")]
    rows += [(p.name, f"{p.per_removal:.2f}", number(p.p50_ms), number(p.p95_ms)) for p in found]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
