"""The benchmark harness runs end to end (`python -m bench --smoke`) and writes a well-formed result.

Only the harness is checked here: the figures of a seconds-long run mean nothing, so nothing is timed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {"1", "2", "3", "4", "5", "6", "7", "8"}
ROW_KEYS = {
    "scenario",
    "measure",
    "unit",
    "ours",
    "baselines",
    "ratio",
    "ratio_label",
    "delta",
    "target",
    "met",
    "note",
    "detail",
}


def _require_containerd() -> None:
    missing = [tool for tool in ("containerd", "ctr") if shutil.which(tool) is None]
    reason = f"not installed: {', '.join(missing)}" if missing else ""
    if not reason and os.geteuid() != 0:
        reason = "containerd needs root"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the benchmark cannot run here: {reason}")
        pytest.skip(f"the benchmark cannot run here: {reason}")


class Smoke(NamedTuple):
    """What one smoke run left: its printed table, its JSON result and its Markdown table."""

    stdout: str
    result: dict[str, Any]
    markdown: str


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    """One smoke run of the whole benchmark, with its own containerd and server, into a temporary folder."""
    _require_containerd()
    base = tmp_path_factory.mktemp("bench")
    output = base / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--output-dir",
            str(output),
            "--work-dir",
            str(base / "work"),
            "--markdown",
            str(base / "table.md"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(output.glob("*-smoke.json"))
    assert len(files) == 1, f"expected one smoke result in {output}, found {files}"
    return Smoke(done.stdout, json.loads(files[0].read_text()), (base / "table.md").read_text())


def test_smoke_run_covers_every_scenario(smoke: Smoke) -> None:
    result = smoke.result
    assert result["mode"] == "smoke"
    assert result["schema"] == 1
    scenarios = result["scenarios"]
    assert set(scenarios) == SCENARIOS


def test_every_row_is_well_formed(smoke: Smoke) -> None:
    result = smoke.result
    scenarios = result["scenarios"]
    for number, scenario in scenarios.items():
        rows = scenario["rows"]
        assert rows, f"scenario {number} has no rows"
        for row in rows:
            assert set(row) == ROW_KEYS, row
            assert row["scenario"] == int(number)
            assert isinstance(row["ours"], float | int), row
            assert all(isinstance(v, float | int) for v in row["baselines"].values()), row
            assert row["met"] in (True, False, None)
            assert (row["target"] is None) == (row["met"] is None), row


def test_each_scenario_has_a_checked_target(smoke: Smoke) -> None:
    result = smoke.result
    scenarios = result["scenarios"]
    for number, scenario in scenarios.items():
        assert any(row["target"] is not None for row in scenario["rows"]), f"scenario {number} checks no target"
    assert result["targets"]["checked"] >= len(SCENARIOS)


def test_baseline_rows_compare_with_containerd(smoke: Smoke) -> None:
    result = smoke.result
    scenarios = result["scenarios"]
    for number in ("1", "2", "3", "4", "5"):
        compared = [row for row in scenarios[number]["rows"] if row["baselines"]]
        assert compared, f"scenario {number} has no side-by-side row"
        # A ratio is missing only when its baseline measured zero (CPU time in clock ticks, in a tiny run).
        assert all(row["ratio"] is not None or not next(iter(row["baselines"].values())) for row in compared)


def test_the_run_records_machine_and_command(smoke: Smoke) -> None:
    result = smoke.result
    machine = result["machine"]
    for key in ("cores", "kernel", "disk_df", "containerd", "git"):
        assert machine[key], key
    assert str(result["command"]).startswith("python -m bench --smoke")


def test_the_table_is_printed_with_every_scenario(smoke: Smoke) -> None:
    lines = smoke.stdout.splitlines()
    assert [cell.strip() for cell in lines[0].split(" | ")][:4] == ["#", "measure", "unit", "ours"]
    shown = {line.split(" | ", 1)[0].strip() for line in lines[2:] if " | " in line}
    assert shown == SCENARIOS
    assert "targets met" in smoke.stdout


def test_the_markdown_table_has_a_line_per_row(smoke: Smoke) -> None:
    rows = sum(len(s["rows"]) for s in smoke.result["scenarios"].values())
    assert smoke.markdown.startswith("| # | measure |")
    assert len(smoke.markdown.splitlines()) == rows + 2
