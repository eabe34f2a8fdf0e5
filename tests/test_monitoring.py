"""Dashboards and alerts as code: they parse, and every query names metrics and labels the server exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from imageremoval.server.telemetry import names as t

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
DASHBOARD = MONITORING / "imageremoval-dashboard.json"
ALERTS = MONITORING / "imageremoval-alerts.yaml"

# PromQL words that are not metric names.
_PROMQL = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "deriv", "delta", "histogram_quantile",
    "clamp_min", "clamp_max", "time", "absent", "by", "without", "and", "or", "unless", "on", "ignoring",
    "group_left", "group_right", "bool", "offset", "topk", "bottomk", "label_values", "humanizePercentage",
}  # fmt: skip
_SERIES = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "counter": ("",), "info": ("",)}


def _known() -> dict[str, tuple[t.MetricSpec, str]]:
    """Every sample name a query may use -> (its family, the suffix)."""
    out: dict[str, tuple[t.MetricSpec, str]] = {}
    for spec in t.METRICS:
        for suffix in _SUFFIXES[spec.kind]:
            out[spec.prometheus + suffix] = (spec, suffix)
    return out


def names_in(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric name, label keys matched) for each series selector in a PromQL expression."""
    text = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    text = re.sub(r"\$__\w+|\$\w+", "", text)
    text = re.sub(r"(?<![\w.])\d+(\.\d+)?([eE][-+]?\d+)?", "", text)  # numbers, 1e-9 included
    for match in _SERIES.finditer(re.sub(r'"[^"]*"(?![^{]*\})', '""', text)):
        name, matchers = match.group(1), match.group(2) or ""
        if name in _PROMQL:
            continue
        if text[match.end() :].lstrip().startswith("(") and not matchers:
            continue  # a function we do not list
        yield name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))


def _check(expr: str, *, allow_later: bool) -> set[str]:
    known = _known()
    used: set[str] = set()
    for name, labels in names_in(expr):
        assert name in known, f"{name} in {expr!r} is not a metric the server exports (telemetry.METRICS)"
        spec, suffix = known[name]
        assert spec.exported == "always" or (allow_later and spec.exported == "later"), (name, spec.exported)
        allowed = (
            set(spec.labels) | set(spec.optional) | {"job", "instance"} | ({"le"} if suffix == "_bucket" else set())
        )
        assert labels <= allowed, f"{name}: labels {labels - allowed} are not on the metric"
        used.add(spec.prometheus)
    assert used, f"no metric in {expr!r}"
    return used


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    # Grafana's label_values(selector, label): the selector is the query.
    exprs += [
        re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"])
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    return exprs


def test_the_dashboard_parses_and_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    used: set[str] = set()
    for expr in _dashboard_exprs(dashboard):
        used |= _check(expr, allow_later=True)
    ours = {
        s.prometheus
        for s in t.METRICS
        if s.otel and s.exported == "always" and s.prometheus != "imageremoval_build_info"
    }
    assert ours <= used | {"imageremoval_build_info"}, f"not on the dashboard: {ours - used}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_alert_rules_parse_cover_errors_and_containerd_and_query_only_exported_series() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    by_name = {rule["alert"]: rule for rule in rules}
    assert {"ImageRemovalErrors", "ImageRemovalContainerdUnavailable"} <= set(by_name)
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and re.fullmatch(r"\d+[smh]", rule["for"])
        _check(rule["expr"], allow_later=False)  # an alert on series nothing exports yet could never fire
    assert _check(by_name["ImageRemovalContainerdUnavailable"]["expr"], allow_later=False) == {
        "imageremoval_containerd_up"
    }


def test_the_query_check_itself_catches_unknown_names_and_labels() -> None:
    for bad in ("sum(rate(imageremoval_removal_total[5m]))", 'imageremoval_removals_total{verdict="x"}'):
        try:
            _check(bad, allow_later=False)
        except AssertionError:
            continue
        raise AssertionError(f"{bad!r} passed the check")
    assert [n for n, _ in names_in('histogram_quantile(0.9, sum by (le) (rate(x_bucket{a="b"}[5m])))')] == ["x_bucket"]
