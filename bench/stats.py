"""Summaries of timing samples (median, p95) and the side-by-side rows the report prints."""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Summary:
    """Distribution of one variant's samples, in the row's unit."""

    n: int
    p50: float
    p95: float
    mean: float
    min: float
    max: float

    def as_dict(self) -> dict[str, float]:
        """JSON form."""
        return {
            "n": self.n,
            "p50": self.p50,
            "p95": self.p95,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
        }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (numpy's default), for fraction in [0, 1]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> Summary:
    """Median, p95 and range of the samples (NaN everywhere when there are none)."""
    if not values:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(values),
        p50=statistics.median(values),
        p95=percentile(values, 0.95),
        mean=statistics.fmean(values),
        min=min(values),
        max=max(values),
    )


class Goal(enum.Enum):
    """How a row's target is checked."""

    RATIO_AT_MOST = "ratio<="  # ours / baseline <= limit
    RATIO_AT_LEAST = "ratio>="  # ours / baseline >= limit
    DELTA_AT_MOST = "delta<="  # ours - baseline <= limit (in the row's unit)
    VALUE_AT_MOST = "value<="  # ours <= limit
    FASTER_THAN_ALL = "faster"  # ours < every baseline


@dataclass(frozen=True, slots=True)
class Target:
    """A target from the issue, checkable against a row."""

    goal: Goal
    limit: float = 0.0
    text: str = ""

    def describe(self) -> str:
        """How the table shows it."""
        if self.text:
            return self.text
        return {
            Goal.RATIO_AT_MOST: f"<= {self.limit:g}x",
            Goal.RATIO_AT_LEAST: f">= {self.limit:g}x",
            Goal.DELTA_AT_MOST: f"<= +{self.limit:g}",
            Goal.VALUE_AT_MOST: f"<= {self.limit:g}",
            Goal.FASTER_THAN_ALL: "< all baselines",
        }[self.goal]


@dataclass(slots=True)
class Row:
    """One line of the table: our figure, the baselines' figures, the ratio and whether the target is met.

    `ours` and `baselines` are the figures compared (a p50, a rate, a size); `detail` keeps each variant's
    whole summary for the JSON. The ratio is ours over the first baseline, unless `ratio` is given.
    """

    scenario: int
    measure: str
    unit: str
    ours: float
    baselines: dict[str, float] = field(default_factory=dict)
    target: Target | None = None
    ratio: float | None = None
    ratio_label: str = ""
    note: str = ""
    detail: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.baselines:
            first = next(iter(self.baselines.values()))
            self.ratio = self.ours / first if first else math.nan
            if not self.ratio_label:
                self.ratio_label = f"ours/{next(iter(self.baselines))}"

    @property
    def delta(self) -> float | None:
        """Ours minus the first baseline."""
        if not self.baselines:
            return None
        return self.ours - next(iter(self.baselines.values()))

    @property
    def met(self) -> bool | None:
        """None for rows without a target (context)."""
        target = self.target
        if target is None:
            return None
        if any(math.isnan(v) for v in (self.ours, *self.baselines.values())):
            return False
        goal = target.goal
        if goal is Goal.RATIO_AT_MOST:
            return self.ratio is not None and self.ratio <= target.limit
        if goal is Goal.RATIO_AT_LEAST:
            return self.ratio is not None and self.ratio >= target.limit
        if goal is Goal.DELTA_AT_MOST:
            return self.delta is not None and self.delta <= target.limit
        if goal is Goal.VALUE_AT_MOST:
            return self.ours <= target.limit
        return all(self.ours < value for value in self.baselines.values())

    def as_dict(self) -> dict[str, object]:
        """JSON form (NaN becomes null)."""
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "unit": self.unit,
            "ours": _finite(self.ours),
            "baselines": {name: _finite(value) for name, value in self.baselines.items()},
            "ratio": _finite(self.ratio),
            "ratio_label": self.ratio_label,
            "delta": _finite(self.delta),
            "target": self.target.describe() if self.target else None,
            "met": self.met,
            "note": self.note,
            "detail": {name: {k: _finite(v) for k, v in s.items()} for name, s in self.detail.items()},
        }


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, 4)


def details(summaries: Mapping[str, Summary]) -> dict[str, dict[str, float]]:
    """The JSON detail of several variants' summaries."""
    return {name: summary.as_dict() for name, summary in summaries.items()}
