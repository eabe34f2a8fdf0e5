"""The one table the benchmark prints and the JSON it writes to bench/results/."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .stats import Row

SCHEMA = 1
HEADERS = ("#", "measure", "unit", "ours", "baseline(s)", "ratio", "target", "met?")


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One scenario's rows and how long it took."""

    number: int
    title: str
    seconds: float
    rows: list[Row]


def number(value: float | None) -> str:
    """Three significant figures or so, without exponents."""
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude < 0.005:
        return "0.00"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _met(row: Row) -> str:
    met = row.met
    return "" if met is None else ("yes" if met else "NO")


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return ""
    text = f"{number(row.ratio)}x"
    if row.target is not None and row.target.text.startswith("<= +") and row.delta is not None:
        text += f" ({row.delta:+.2f} {row.unit})"
    return text


def table(rows: Sequence[Row]) -> str:
    """A plain-text table, one line per row; notes follow the table, numbered."""
    lines: list[tuple[str, ...]] = []
    notes: list[str] = []
    for row in rows:
        measure = row.measure
        if row.note:
            notes.append(row.note)
            measure += f" [{len(notes)}]"
        baselines = "; ".join(f"{name} {number(value)}" for name, value in row.baselines.items())
        lines.append(
            (
                str(row.scenario),
                measure,
                row.unit,
                number(row.ours),
                baselines,
                _ratio(row),
                row.target.describe() if row.target else "",
                _met(row),
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(HEADERS)]

    def render(cells: Sequence[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    out = [render(HEADERS), "-+-".join("-" * w for w in widths)]
    out += [render(line) for line in lines]
    out += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(out)


def markdown(rows: Sequence[Row]) -> str:
    """The same table in Markdown, for docs/BENCHMARKS.md."""
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        baselines = "; ".join(f"{name} {number(value)}" for name, value in row.baselines.items())
        cells = (
            str(row.scenario),
            row.measure + (f" ({row.note})" if row.note else ""),
            row.unit,
            number(row.ours),
            baselines,
            _ratio(row),
            row.target.describe() if row.target else "",
            _met(row),
        )
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(out)


def document(
    *,
    mode: str,
    command: str,
    started_at: str,
    seconds: float,
    plan: Mapping[str, object],
    machine: Mapping[str, object],
    scenarios: Sequence[ScenarioResult],
    extra: Mapping[str, object],
) -> dict[str, object]:
    """The JSON document of one run."""
    rows = [row for s in scenarios for row in s.rows]
    checked = [row for row in rows if row.met is not None]
    return {
        "schema": SCHEMA,
        "mode": mode,
        "command": command,
        "started_at": started_at,
        "duration_s": round(seconds, 1),
        "plan": dict(plan),
        "machine": dict(machine),
        **extra,
        "scenarios": {
            str(s.number): {"title": s.title, "seconds": round(s.seconds, 1), "rows": [r.as_dict() for r in s.rows]}
            for s in scenarios
        },
        "targets": {"checked": len(checked), "met": sum(1 for row in checked if row.met)},
    }


def write_json(path: Path, data: Mapping[str, object]) -> None:
    """Write atomically (a .tmp beside it, then rename), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    temporary.replace(path)
