"""The six scenarios of issue 6, each ours side by side with containerd (and `ctr`) on the same images."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imageremoval.client import ImageRemovalClient
from tests.support.images import Manifest

from .cleaning import scenario_7
from .content import BenchImage, ImageFactory, Own, over_shared_base, over_shared_layers, unique_index, unique_manifest
from .env import CLI_BIN, REPO, BenchError, ServerProcess, cpu_seconds, rss_mb
from .plan import Plan
from .report import ScenarioResult
from .stats import Goal, Row, Summary, Target, details, summarize
from .usage import scenario_8
from .variants import RawImages, Variant, ctr_rm, interleave, ours, ours_load, raw_load

RAW_SYNC = "raw Delete(sync)"
RAW_ASYNC = "raw Delete(sync=false)"
CTR = "ctr rm --sync"


@dataclass
class Context:
    """What every scenario gets: the containerd, our server, an image factory, the plan, a log."""

    address: str
    containerd_pid: int
    server: ServerProcess
    factory: ImageFactory
    plan: Plan
    work_dir: Path
    run_id: str
    log: Callable[[str], None]
    namespaces: list[str] = field(default_factory=list)

    def namespace(self, scenario: str) -> str:
        """A namespace of this run for one scenario (cleared at its end)."""
        name = f"bench-{self.run_id}-{scenario}"
        self.namespaces.append(name)
        return name

    def name(self, scenario: str, label: str, position: int) -> str:
        """A fully qualified image name, so our server and containerd see the same string."""
        return f"docker.io/bench/{_slug(scenario)}-{_slug(label)}-{position}:latest"


def _slug(text: str) -> str:
    """Lowercase letters and digits joined by single dashes: valid in a repository path."""
    return "-".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


class CpuMeter:
    """CPU time (ms) processes spend over a block: where a removal's cost goes, beyond wall time."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.ms: dict[str, float] = {}
        self._before: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = {name: (cpu_seconds(pid) - self._before[name]) * 1000 for name, pid in self.pids.items()}


BASE_NAME = "docker.io/bench/base:latest"


def _base_image(ctx: Context, namespace: str, scenario: str) -> Manifest:
    """A 3-layer image whose layers (and config) thinner images of the scenario share; it stays."""
    base = unique_manifest(f"{ctx.factory.tag()}-{scenario}-base")
    ctx.factory.put(namespace, [(BASE_NAME, base)])
    return base


def _split(total: int, rounds: int) -> list[int]:
    """total images in `rounds` batches as even as possible."""
    rounds = max(1, min(rounds, total))
    return [total // rounds + (1 if r < total % rounds else 0) for r in range(rounds)]


def _merge(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for label, values in more.items():
        into.setdefault(label, []).extend(values)


def _latency_rows(
    scenario: int, what: str, samples: dict[str, list[float]], target: Target | None, note: str = ""
) -> list[Row]:
    """A p50 row (with the target) and a p95 row (context) for ours against the other variants."""
    summaries = {label: summarize(values) for label, values in samples.items()}
    ours_summary = summaries.pop("ours")
    others = dict(summaries)
    detail = details({"ours": ours_summary, **others})
    return [
        Row(
            scenario,
            f"{what}: p50",
            "ms",
            ours_summary.p50,
            {label: s.p50 for label, s in others.items()},
            target=target,
            note=note,
            detail=detail,
        ),
        Row(scenario, f"{what}: p95", "ms", ours_summary.p95, {label: s.p95 for label, s in others.items()}),
    ]


# 1. Single removal latency


def scenario_1(ctx: Context) -> list[Row]:
    """200 images of 3 layers and an index (4 platforms, 2 present) removed one by one: ours, raw, ctr."""
    ns = ctx.namespace("s1")
    plan = ctx.plan
    raw = RawImages(ctx.address)
    rows: list[Row] = []
    with ImageRemovalClient(ctx.server.target) as client:
        variants = (
            Variant("ours", ours(client, ns)),
            Variant(RAW_SYNC, raw.delete(ns, sync=True)),
            Variant(CTR, ctr_rm(ctx.address, ns)),
        )
        single: dict[str, list[float]] = {}
        for batch, count in enumerate(_split(plan.single_images, plan.single_rounds)):
            images = {
                v.label: ctx.factory.put(
                    ns,
                    [
                        (ctx.name("s1", v.label, batch * 10_000 + i), unique_manifest(ctx.factory.tag()))
                        for i in range(count)
                    ],
                )
                for v in variants
            }
            ctx.log(f"scenario 1: round {batch + 1}, {count} images per variant")
            _merge(single, interleave(variants, images))
        multi: dict[str, list[float]] = {}
        for batch, count in enumerate(_split(plan.index_images, plan.index_rounds)):
            images = {}
            for v in variants:
                made: list[BenchImage] = []
                for i in range(count):
                    image, missing = unique_index(ctx.factory.tag())
                    made += ctx.factory.put(ns, [(ctx.name("s1i", v.label, batch * 10_000 + i), image)], missing)
                images[v.label] = made
            ctx.log(f"scenario 1: index round {batch + 1}, {count} indexes per variant")
            _merge(multi, interleave(variants, images))
    raw.close()
    target = Target(Goal.RATIO_AT_MOST, 1.15)
    rows += _latency_rows(1, "by name, 3-layer image", single, target)
    rows += _latency_rows(1, "by name, index 4 platforms / 2 present", multi, target)
    return rows


# 2. Overhead without garbage collection


def scenario_2(ctx: Context) -> list[Row]:
    """The same removals with async_gc against raw Images.Delete(sync=false)."""
    ns = ctx.namespace("s2")
    plan = ctx.plan
    raw = RawImages(ctx.address)
    with ImageRemovalClient(ctx.server.target) as client:
        variants = (
            Variant("ours", ours(client, ns, async_gc=True)),
            Variant(RAW_ASYNC, raw.delete(ns, sync=False)),
        )
        samples: dict[str, list[float]] = {}
        server_cpu = 0.0
        for batch, count in enumerate(_split(plan.single_images, plan.single_rounds)):
            images = {
                v.label: ctx.factory.put(
                    ns,
                    [
                        (ctx.name("s2", v.label, batch * 10_000 + i), unique_manifest(ctx.factory.tag()))
                        for i in range(count)
                    ],
                )
                for v in variants
            }
            ctx.log(f"scenario 2: round {batch + 1}, {count} images per variant")
            with CpuMeter({"server": ctx.server.pid}) as cpu:
                _merge(samples, interleave(variants, images))
            server_cpu += cpu.ms["server"]
    raw.close()
    rows = _latency_rows(
        2,
        "by name, async GC, 3-layer image",
        samples,
        Target(Goal.DELTA_AT_MOST, 1.0, "<= +1 ms"),
        note="delta = ours - raw at p50",
    )
    removals = len(samples["ours"])
    rows.append(
        Row(
            2,
            "our server's CPU per removal",
            "ms",
            server_cpu / removals if removals else math.nan,
            note="containerd serves both variants interleaved here; scenario 3 splits its CPU per variant",
        )
    )
    return rows


# 3. Concurrency


def scenario_3(ctx: Context) -> list[Row]:
    """Concurrent clients removing 1,000 images: removals per second, ours against raw containerd."""
    ns = ctx.namespace("s3")
    plan = ctx.plan
    rates: dict[str, list[float]] = {"ours": [], RAW_SYNC: []}
    latencies: dict[str, list[float]] = {"ours": [], RAW_SYNC: []}
    cpu_ms: dict[str, dict[str, float]] = {"ours": {}, RAW_SYNC: {}}
    removed: dict[str, int] = {"ours": 0, RAW_SYNC: 0}
    base = _base_image(ctx, ns, "s3")
    for round_ in range(plan.concurrent_rounds):
        order = ("ours", RAW_SYNC) if round_ % 2 == 0 else (RAW_SYNC, "ours")
        for label in order:
            images = ctx.factory.put(
                ns,
                [
                    (ctx.name("s3", label, round_ * 100_000 + i), over_shared_layers(ctx.factory.tag(), base))
                    for i in range(plan.concurrent_images)
                ],
                own=Own.MANIFEST_AND_CONFIG,
            )
            with CpuMeter({"server": ctx.server.pid, "containerd": ctx.containerd_pid, "client": os.getpid()}) as cpu:
                if label == "ours":
                    result = asyncio.run(ours_load(ctx.server.target, ns, images, plan.concurrent_clients))
                else:
                    result = asyncio.run(raw_load(ctx.address, ns, images, plan.concurrent_clients))
            for process, ms in cpu.ms.items():
                cpu_ms[label][process] = cpu_ms[label].get(process, 0.0) + ms
            removed[label] += len(result.latencies_ms)
            left = [name for name in ctx.factory.names(ns) if name != BASE_NAME]
            if left:
                raise BenchError(f"scenario 3: {len(left)} images left after {label}'s run, e.g. {left[0]}")
            rates[label].append(result.rate)
            latencies[label].extend(result.latencies_ms)
            ctx.log(f"scenario 3: round {round_ + 1}, {label}: {result.rate:.1f} removals/s")
    rate = {label: summarize(values) for label, values in rates.items()}
    latency = {label: summarize(values) for label, values in latencies.items()}
    what = f"{plan.concurrent_clients} clients x {plan.concurrent_images} removals"
    return [
        Row(
            3,
            f"{what}: removals/s (median of rounds)",
            "1/s",
            rate["ours"].p50,
            {RAW_SYNC: rate[RAW_SYNC].p50},
            target=Target(Goal.RATIO_AT_LEAST, 0.9),
            detail=details({f"{k} rate": v for k, v in rate.items()}),
        ),
        Row(
            3,
            f"{what}: latency p50 under load",
            "ms",
            latency["ours"].p50,
            {RAW_SYNC: latency[RAW_SYNC].p50},
            detail=details({f"{k} latency": v for k, v in latency.items()}),
        ),
        Row(3, f"{what}: latency p95 under load", "ms", latency["ours"].p95, {RAW_SYNC: latency[RAW_SYNC].p95}),
        *_cpu_rows(cpu_ms, removed),
    ]


def _cpu_rows(cpu_ms: dict[str, dict[str, float]], removed: dict[str, int]) -> list[Row]:
    """Server plus containerd CPU per removal, ours against raw (the client's own CPU as context)."""
    per = {
        label: {process: ms / removed[label] for process, ms in spent.items()}
        for label, spent in cpu_ms.items()
        if removed[label]
    }
    if "ours" not in per or RAW_SYNC not in per:
        return []
    mine, raw = per["ours"], per[RAW_SYNC]
    return [
        Row(
            3,
            "CPU per removal: our server + containerd",
            "ms",
            mine["server"] + mine["containerd"],
            {f"{RAW_SYNC}: containerd": raw["containerd"]},
            note=f"ours: server {mine['server']:.2f} + containerd {mine['containerd']:.2f} ms; the benchmark's "
            f"client process spent {mine['client']:.2f} (ours) and {raw['client']:.2f} (raw) ms per removal",
            detail={label: {k: round(v, 4) for k, v in values.items()} for label, values in per.items()},
        )
    ]


# 4. Scale


def scenario_4(ctx: Context) -> list[Row]:
    """The same removals with 100, 1,000 and 10,000 other images in the namespace, by name and short ID."""
    ns = ctx.namespace("s4")
    plan = ctx.plan
    raw = RawImages(ctx.address)
    shared = ctx.factory.put(
        ns,
        [
            (f"docker.io/others/base-{i}:latest", unique_manifest(ctx.factory.tag()))
            for i in range(plan.scale_shared_targets)
        ],
    )
    others = len(shared)
    groups = ("by name", "by name, async GC", "by short ID", "by short ID, async GC")
    results: dict[int, dict[str, dict[str, Summary]]] = {}
    rss: dict[int, float] = {}  # our server's RSS once each level's images exist (and are indexed)
    scans: dict[int, tuple[float, float]] = {}  # one List(target.digest==) and one List(~=) per level
    with ImageRemovalClient(ctx.server.target) as client:
        for level in plan.scale_levels:
            started = time.perf_counter()
            names = [f"docker.io/others/img-{k}:latest" for k in range(others, level)]
            ctx.factory.put_records(ns, names, shared)
            others = max(others, level)
            ctx.log(f"scenario 4: {others} other images ({time.perf_counter() - started:.1f}s to create)")
            comparisons = {
                "by name": (
                    Variant("ours", ours(client, ns)),
                    Variant(RAW_SYNC, raw.delete(ns, sync=True)),
                ),
                "by name, async GC": (
                    Variant("ours", ours(client, ns, async_gc=True)),
                    Variant(RAW_ASYNC, raw.delete(ns, sync=False)),
                ),
                "by short ID": (
                    Variant("ours", ours(client, ns, by_id=True)),
                    Variant("raw List(digest~=) + Delete(sync)", raw.list_and_delete(ns)),
                ),
                "by short ID, async GC": (
                    Variant("ours", ours(client, ns, by_id=True, async_gc=True)),
                    Variant(RAW_ASYNC, raw.delete(ns, sync=False)),
                ),
            }
            results[level] = {}
            absent = "sha256:" + "0" * 64
            scans[level] = (
                summarize(raw.list_ms(ns, [f"target.digest=={absent}"], plan.scale_images)).p50,
                summarize(raw.list_ms(ns, ['target.digest~="^sha256:000000000000"'], plan.scale_images)).p50,
            )
            for group in groups:
                variants = comparisons[group]
                images = {
                    v.label: ctx.factory.put(
                        ns,
                        [
                            (ctx.name(f"s4-{level}-{group}", v.label, i), unique_manifest(ctx.factory.tag()))
                            for i in range(plan.scale_images)
                        ],
                    )
                    for v in variants
                }
                samples = interleave(variants, images)
                # Collect what async deletes left, so the next group's sync deletes do not pay for it.
                ctx.factory.collect_garbage()
                results[level][group] = {label: summarize(values) for label, values in samples.items()}
            rss[level] = ctx.server.rss_mb()
    raw.close()
    rows: list[Row] = []
    for level in plan.scale_levels:
        for group in groups:
            summaries = dict(results[level][group])
            mine = summaries.pop("ours")
            rows.append(
                Row(
                    4,
                    f"{group} @{level:,} others: p50",
                    "ms",
                    mine.p50,
                    {label: s.p50 for label, s in summaries.items()},
                    target=Target(Goal.RATIO_AT_MOST, 1.0, "<= 1x raw")
                    if group == "by short ID"
                    else Target(Goal.RATIO_AT_MOST, 1.15)
                    if group == "by name" and level == plan.scale_levels[-1]
                    else None,
                    note=(
                        f"one containerd Images.List here: {scans[level][0]:.2f} ms with ==, "
                        f"{scans[level][1]:.2f} ms with ~= (a scan of every record of the namespace)"
                    )
                    if group == "by name, async GC"
                    else "",
                    detail=details({"ours": mine, **summaries}),
                )
            )
    low, high = plan.scale_levels[0], plan.scale_levels[-1]
    for group in ("by name", "by name, async GC", "by short ID, async GC"):
        ours_low, ours_high = results[low][group]["ours"].p50, results[high][group]["ours"].p50
        raw_label = next(label for label in results[low][group] if label != "ours")
        raw_low, raw_high = results[low][group][raw_label].p50, results[high][group][raw_label].p50
        rows.append(
            Row(
                4,
                f"{group}: p50 @{high:,} / p50 @{low:,}",
                "ms",
                ours_high,
                {f"ours @{low:,}": ours_low},
                target=Target(Goal.RATIO_AT_MOST, 1.2) if "async" in group else None,
                ratio_label=f"ours@{high}/ours@{low}",
                note=f"{raw_label} itself grows x{raw_high / raw_low:.2f} ({raw_low:.2f} -> {raw_high:.2f} ms)",
            )
        )
    per_image = (rss[high] - rss[low]) * 1e6 / max(high - low, 1)
    rows.append(
        Row(
            4,
            f"server RSS with {high:,} images in the namespace (indexed)",
            "MB",
            rss[high],
            target=Target(Goal.VALUE_AT_MOST, 150),
            note=f"{rss[low]:.1f} MB at {low:,}: about {per_image:,.0f} bytes per image",
        )
    )
    return rows


# 5. Many removals from the CLI


def scenario_5(ctx: Context) -> list[Row]:
    """One command removing 500 references: our CLI, `ctr images rm --sync`, a shell loop of ctr."""
    ns = ctx.namespace("s5")
    plan = ctx.plan
    loop_script = 'for n in "$@"; do ctr --address "$A" -n "$N" images rm --sync "$n" >/dev/null || exit 1; done'
    ours_cli = [str(CLI_BIN), "rm", "--server", ctx.server.target, "-n", ns]
    ctr_once = ["ctr", "--address", ctx.address, "-n", ns, "images", "rm", "--sync"]
    shell_loop = ["bash", "-c", loop_script, "loop"]
    commands: dict[str, list[str]] = {
        "ours": ours_cli,
        "ctr rm --sync (one call)": ctr_once,
        "shell loop of ctr rm --sync": shell_loop,
        f"`imageremoval rm --parallel {plan.cli_concurrency}`": [*ours_cli, "--parallel", str(plan.cli_concurrency)],
    }
    env = {**os.environ, "A": ctx.address, "N": ns}
    base = _base_image(ctx, ns, "s5")
    seconds: dict[str, list[float]] = {label: [] for label in commands}
    labels = list(commands)
    for round_ in range(plan.cli_rounds):
        order = labels[round_ % len(labels) :] + labels[: round_ % len(labels)]
        for label in order:
            images = ctx.factory.put(
                ns,
                [
                    (ctx.name("s5", label, round_ * 10_000 + i), over_shared_layers(ctx.factory.tag(), base))
                    for i in range(plan.cli_refs)
                ],
                own=Own.MANIFEST_AND_CONFIG,
            )
            command = [*commands[label], *(image.name for image in images)]
            started = time.perf_counter()
            done = subprocess.run(
                command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
            )
            elapsed = time.perf_counter() - started
            left = [name for name in ctx.factory.names(ns) if name != BASE_NAME]
            if done.returncode != 0 or left:
                raise BenchError(
                    f"scenario 5: {label} exited {done.returncode} leaving {len(left)} images: "
                    f"{done.stderr.decode(errors='replace')[-500:]}"
                )
            seconds[label].append(elapsed)
            ctx.log(f"scenario 5: round {round_ + 1}, {label}: {elapsed:.2f}s for {plan.cli_refs} references")
    summaries = {label: summarize(values) for label, values in seconds.items()}
    baselines = {label: summaries[label].p50 for label in labels[1:3]}
    what = f"{plan.cli_refs} references, one command"
    rows = [
        Row(
            5,
            f"{what}: wall time",
            "s",
            summaries["ours"].p50,
            baselines,
            target=Target(Goal.FASTER_THAN_ALL),
            note="`imageremoval rm`: one RemoveImage per reference, one after another",
            detail=details(summaries),
        )
    ]
    for label in labels[3:]:
        rows.append(
            Row(
                5,
                f"{what}: {label}",
                "s",
                summaries[label].p50,
                baselines,
                target=Target(Goal.FASTER_THAN_ALL),
            )
        )
    return rows


# 6. Footprint


def scenario_6(ctx: Context) -> list[Row]:
    """Server RSS idle, after 1,000 and after 10,000 removals; time from process start to SERVING."""
    plan = ctx.plan
    starts: list[float] = []
    for attempt in range(plan.footprint_starts):
        with ctx.server.like(ctx.work_dir / "server-starts.log") as server:
            starts.append(server.seconds_to_serving)
        ctx.log(f"scenario 6: start {attempt + 1}: SERVING after {starts[-1]:.3f}s")
    ns = ctx.namespace("s6")
    base = _base_image(ctx, ns, "s6")
    rss: list[tuple[int, float]] = []
    with ctx.server.like(ctx.work_dir / "server-footprint.log") as server:
        time.sleep(1.0)
        idle = server.rss_mb()
        removed = 0
        for cycle in range(plan.footprint_cycles):
            images = ctx.factory.put(
                ns,
                [
                    (ctx.name("s6", "ours", cycle * 100_000 + i), over_shared_base(ctx.factory.tag(), base))
                    for i in range(plan.footprint_batch)
                ],
                own=Own.MANIFEST,
            )
            result = asyncio.run(ours_load(server.target, ns, images, plan.concurrent_clients))
            removed += len(result.latencies_ms)
            rss.append((removed, server.rss_mb()))
            ctx.log(f"scenario 6: {removed} removals, RSS {rss[-1][1]:.1f} MB ({result.rate:.0f}/s)")
        containerd_rss = rss_mb(ctx.containerd_pid)
        peak = server.rss_mb("VmHWM")
    first, last = rss[0], rss[-1]
    start = summarize(starts)
    curve = {f"after {n}": {"rss_mb": mb} for n, mb in rss}
    return [
        Row(6, "RSS idle", "MB", idle, target=Target(Goal.VALUE_AT_MOST, 100)),
        Row(6, f"RSS after {first[0]:,} removals", "MB", first[1], target=Target(Goal.VALUE_AT_MOST, 100)),
        Row(
            6,
            f"RSS after {last[0]:,} removals",
            "MB",
            last[1],
            target=Target(Goal.VALUE_AT_MOST, 100),
            note=f"peak (VmHWM) {peak:.1f} MB; containerd itself: {containerd_rss:.1f} MB",
            detail=curve,
        ),
        Row(
            6,
            f"RSS growth {first[0]:,} -> {last[0]:,} removals",
            "MB",
            last[1] - first[1],
            target=Target(Goal.VALUE_AT_MOST, plan.footprint_leak_mb, f"<= {plan.footprint_leak_mb:g} (no leak)"),
        ),
        Row(
            6,
            f"process start to health SERVING (median of {start.n})",
            "s",
            start.p50,
            target=Target(Goal.VALUE_AT_MOST, 1.0),
            note=f"max {start.max:.3f}s",
            detail=details({"starts": start}),
        ),
    ]


SCENARIOS: dict[int, tuple[str, Callable[[Context], list[Row]]]] = {
    1: ("Single removal latency", scenario_1),
    2: ("Overhead without garbage collection", scenario_2),
    3: ("Concurrency", scenario_3),
    4: ("Scale", scenario_4),
    5: ("Many removals from the CLI", scenario_5),
    6: ("Footprint", scenario_6),
    7: ("Cleaning a node", scenario_7),
    8: ("Usage tracking under churn", scenario_8),
}


def run_scenarios(ctx: Context, numbers: Sequence[int]) -> list[ScenarioResult]:
    """Run the chosen scenarios in order; each clears its namespaces when done."""
    done: list[ScenarioResult] = []
    for number in numbers:
        title, run = SCENARIOS[number]
        ctx.log(f"scenario {number}: {title}")
        started = time.perf_counter()
        before = len(ctx.namespaces)
        try:
            rows = run(ctx)
        finally:
            ctx.factory.clear(ctx.namespaces[before:])
        done.append(ScenarioResult(number, title, time.perf_counter() - started, rows))
    return done
