"""ReclaimSpace and the reclaim loop against the real containerd: LRU order, skips, dry run, a small filesystem."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imageremoval.client import ImageRemovalError, InvalidArgumentError
from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.server.cleaning.disk import disk_usage
from imageremoval.server.config import LoopSettings, UsageSettings
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason
from imageremoval.server.domain.usage import LABEL_FIRST_SEEN, LABEL_LAST_USED, format_stamp
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.providers import telemetry_from_env

from .support.cli import run_cli
from .support.ctr import Ctr
from .support.images import Layer, Manifest, file_layer, manifest
from .support.server import Server
from .support.store import Store
from .support.usage import DAY_NS, Tracked, lib, own_update, runnable
from .support.waiting import eventually

PINNED = {"io.cri-containerd.pinned": "pinned"}
UNTRACKED = UsageSettings(enabled=False, min_age_s=0.0)


def aged(store: Store, ns: str, name: str, days_unused: float) -> None:
    """Record, as the tracker would have, a use `days_unused` ago (first seen ten days ago)."""
    now = time.time_ns()
    labels = {
        LABEL_FIRST_SEEN: format_stamp(now - 10 * DAY_NS),
        LABEL_LAST_USED: format_stamp(now - int(days_unused * DAY_NS)),
    }
    own_update(store, ns, name, labels)


def blobby(note: str, size: int = 64 * 1024) -> Manifest:
    return manifest((file_layer("data", os.urandom(size)),), note=note)


@pytest.fixture
def untracked(containerd: PrivateContainerd) -> Iterator[Tracked]:
    server = Tracked(containerd.address, UNTRACKED)
    yield server
    server.close()


def steps_of(
    steps: list[pb.PruneProgress],
) -> tuple[list[str], dict[str, pb.SkipReason], list[str], pb.PruneSummary]:
    removed = [s.removed.image_id for s in steps if s.HasField("removed")]
    skipped = {s.skipped.image.id: s.skipped.reason for s in steps if s.HasField("skipped")}
    planned = [s.planned.image.id for s in steps if s.HasField("planned")]
    assert steps[-1].HasField("summary")
    return removed, skipped, planned, steps[-1].summary


def test_reclaim_removes_least_recently_used_first_and_skips_in_use_and_protected(
    untracked: Tracked, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    ids = {}
    for name, days in (("oldest", 3.0), ("middle", 2.0), ("newest", 1.0)):
        ids[name] = store.put(ns, [lib(f"{name}:1")], blobby(name))
        aged(store, ns, lib(f"{name}:1"), days)
    ids["pinned"] = store.put(ns, [lib("pinned:1")], blobby("pinned"), labels=PINNED)
    aged(store, ns, lib("pinned:1"), 9.0)
    ids["used"] = store.put(ns, [lib("used:1")], runnable(busybox, "reclaim-used"))
    aged(store, ns, lib("used:1"), 9.0)
    ctr.create(ns, lib("used:1"), "user")
    listed = {i.id: i for i in untracked.client.list_images(namespace=ns)}
    target = listed[ids["oldest"]].unique_bytes
    removed, skipped, _, summary = steps_of(
        list(untracked.client.reclaim_space(namespace=ns, target_free_bytes=target))
    )
    assert removed == [ids["oldest"]]
    assert skipped == {ids["pinned"]: pb.SKIP_REASON_PROTECTED, ids["used"]: pb.SKIP_REASON_IN_USE}
    assert summary.stop_reason == "target reached"
    assert summary.target_bytes == target
    assert summary.freed_bytes == summary.planned_bytes >= target  # measured after collection
    assert store.target(ns, lib("oldest:1")) is None
    for name in ("middle", "newest", "pinned", "used"):
        assert store.target(ns, lib(f"{name}:1")) == ids[name]


def test_reclaim_dry_run_streams_the_plan_and_changes_nothing(untracked: Tracked, store: Store, ns: str) -> None:
    ids = {}
    for name, days in (("a", 5.0), ("b", 4.0), ("c", 1.0)):
        ids[name] = store.put(ns, [lib(f"dry-{name}:1")], blobby(f"dry-{name}"))
        aged(store, ns, lib(f"dry-{name}:1"), days)
    listed = {i.id: i for i in untracked.client.list_images(namespace=ns)}
    target = listed[ids["a"]].unique_bytes + 1  # more than the least recently used alone
    steps = list(untracked.client.reclaim_space(namespace=ns, target_free_bytes=target, dry_run=True))
    removed, _, planned, summary = steps_of(steps)
    assert not removed and set(planned) == {ids["a"], ids["b"]}
    assert summary.stop_reason == "dry run"
    assert summary.planned_bytes == listed[ids["a"]].unique_bytes + listed[ids["b"]].unique_bytes
    assert summary.freed_bytes == 0 and summary.images_removed == 0
    assert all(store.target(ns, lib(f"dry-{n}:1")) == ids[n] for n in ids)


def test_reclaim_targets_are_checked(untracked: Tracked, ns: str) -> None:
    for bad in ({}, {"target_free_bytes": 1, "target_usage_percent": 50.0}, {"target_usage_percent": 120.0}):
        with pytest.raises(InvalidArgumentError) as caught:
            list(untracked.client.reclaim_space(namespace=ns, **bad))  # type: ignore[arg-type]
        assert caught.value.reason == Reason.INVALID_RECLAIM_TARGET
    with pytest.raises(ImageRemovalError) as unmeasured:  # this server was given no containerd root
        list(untracked.client.reclaim_space(namespace=ns, target_usage_percent=50.0))
    assert unmeasured.value.reason == Reason.RECLAIM_UNAVAILABLE


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs of its own for a second private containerd: its usage moves with what we put there."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_loop_frees_a_small_filesystem_down_to_the_low_mark_then_stops_when_nothing_more_may_go(
    small_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imageremoval.server.cleaning.reclaim_loop")
    daemon = PrivateContainerd(small_root / "containerd")
    daemon.start()
    root = small_root / "containerd" / "root"
    try:
        own = Store(daemon.address)
        ids = []
        for n in range(6):
            name = lib(f"fill-{n}:1")
            ids.append(own.put("fill", [name], blobby(f"fill-{n}", 4 * 1024 * 1024)))
            aged(own, "fill", name, 9.0 - n)  # fill-0 is the least recently used
        own.put("fill", [lib("pinned:1")], blobby("fill-pinned", 4 * 1024 * 1024), labels=PINNED)
        aged(own, "fill", lib("pinned:1"), 20.0)
        usage = disk_usage(root)
        assert usage is not None
        high, low = usage.percent - 1, usage.percent - 15  # about two images' worth above the low mark
        server = Tracked(
            daemon.address,
            UNTRACKED,
            containerd_root=root,
            reclaim=LoopSettings(high_percent=high, low_percent=low, interval_s=0.2),
        )
        loop = server.thread.app.reclaim_loop
        assert loop is not None
        run = eventually(lambda: loop.runs[0] if loop.runs else None, "a reclaim run")
        assert run.stop_reason == "target reached"
        assert run.usage_before >= high and run.usage_after < low
        after = disk_usage(root)
        assert after is not None and after.percent < low  # statvfs says so, not our own figures
        gone = [i for i in ids if i not in {r.target.digest for r in own.records("fill")}]
        assert gone == ids[: len(gone)] and 0 < len(gone) < len(ids)  # least recently used first
        with grpc.insecure_channel(f"127.0.0.1:{server.thread.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        logged = [r for r in caplog.records if r.name == "imageremoval.server.cleaning.reclaim_loop"]
        assert logged and logged[0].__dict__["stopReason"] == "target reached"
        assert logged[0].__dict__["freedBytes"] == run.freed_bytes > 0
        server.close()
        # A low mark nothing can reach: everything removable goes, the pinned image stays, and it says so.
        greedy = Tracked(
            daemon.address,
            UNTRACKED,
            containerd_root=root,
            reclaim=LoopSettings(high_percent=0.1, low_percent=0.05, interval_s=0.2),
        )
        greedy_loop = greedy.thread.app.reclaim_loop
        assert greedy_loop is not None
        last = eventually(lambda: greedy_loop.runs[0] if greedy_loop.runs else None, "a second run")
        assert last.stop_reason == "nothing more may go"
        assert {r.name for r in own.records("fill")} == {lib("pinned:1")}
        greedy.close()
        own.close()
    finally:
        daemon.stop()


def test_reclaim_metrics_count_bytes_targeted_and_freed_images_by_outcome_and_the_run(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    reader = InMemoryMetricReader()
    server = Tracked(containerd.address, UNTRACKED, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        gone = store.put(ns, [lib("metric-old:1")], blobby("metric-old"))
        aged(store, ns, lib("metric-old:1"), 5.0)
        kept = store.put(ns, [lib("metric-pinned:1")], blobby("metric-pinned"), labels=PINNED)
        aged(store, ns, lib("metric-pinned:1"), 9.0)
        target = {i.id: i for i in server.client.list_images(namespace=ns)}[gone].unique_bytes
        summary = list(server.client.reclaim_space(namespace=ns, target_free_bytes=target))[-1].summary
        assert store.target(ns, lib("metric-pinned:1")) == kept
        points = metric_points(reader)
        assert points[t.METRIC_RECLAIM_TARGETED] == [({"trigger": "rpc"}, target)]
        assert points[t.METRIC_RECLAIM_FREED] == [({"trigger": "rpc"}, summary.freed_bytes)]
        assert sorted(points[t.METRIC_RECLAIM_IMAGES], key=str) == sorted(
            [
                ({"trigger": "rpc", "outcome": "removed", "reason": ""}, 1),
                ({"trigger": "rpc", "outcome": "skipped", "reason": "PROTECTED"}, 1),
            ],
            key=str,
        )
        assert points[t.METRIC_RECLAIM_RUNS] == [({"trigger": "rpc", "stop_reason": "target reached"}, 1)]
        assert len(points[t.METRIC_RECLAIM_LAST_SUCCESS]) == 1
    finally:
        server.close()


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], object]]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[tuple[dict[str, object], object]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


def test_cli_filter_unused_for_lists_only_images_not_used_that_long(untracked: Tracked, store: Store, ns: str) -> None:
    old = store.put(ns, [lib("cli-old:1")], blobby("cli-old"))
    aged(store, ns, lib("cli-old:1"), 4.0)
    store.put(ns, [lib("cli-recent:1")], blobby("cli-recent"))
    aged(store, ns, lib("cli-recent:1"), 1.0)
    shown = run_cli(
        Server(untracked.thread, InMemorySpanExporter()), "ls", "-q", "--filter", "unused-for=72h", "-n", ns
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [old.removeprefix("sha256:")[:12]]
    bad = run_cli(Server(untracked.thread, InMemorySpanExporter()), "ls", "--filter", "unused-for=soon", "-n", ns)
    assert bad.returncode == 2


PROMETHEUS_NAMES = {  # what the Prometheus endpoint shows for the reclaim and usage instruments
    "imageremoval_reclaim_targeted_bytes_total": "counter",
    "imageremoval_reclaim_freed_bytes_total": "counter",
    "imageremoval_reclaim_images_total": "counter",
    "imageremoval_reclaim_runs_total": "counter",
    "imageremoval_reclaim_filesystem_usage_ratio": "gauge",
    "imageremoval_reclaim_pending_bytes": "gauge",
    "imageremoval_reclaim_last_success_timestamp_seconds": "gauge",
    "imageremoval_usage_label_writes_total": "counter",
}


def test_reclaim_and_usage_metrics_on_the_prometheus_endpoint(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    telemetry = telemetry_from_env({}, metrics_listen=("127.0.0.1", port))
    server = Tracked(
        containerd.address,
        UsageSettings(sweep_interval_s=3600.0, min_age_s=0.0),
        meter_provider=telemetry.meter_provider,
        containerd_root=Path(containerd.base_dir) / "root",
    )
    try:
        gone = store.put(ns, [lib("prom-old:1")], blobby("prom-old"))
        aged(store, ns, lib("prom-old:1"), 5.0)
        server.sweep(ns)  # writes first-seen where missing (none here) and reads every image
        store.put(ns, [lib("prom-new:1")], blobby("prom-new"))
        server.image_with(ns, store.target(ns, lib("prom-new:1")) or "", "first_seen")  # one label write
        target = {i.id: i for i in server.client.list_images(namespace=ns)}[gone].unique_bytes
        list(server.client.reclaim_space(namespace=ns, target_free_bytes=target))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            body = reply.read().decode()
        types = dict(line.split(" ", 3)[2:4] for line in body.splitlines() if line.startswith("# TYPE "))
        assert {name: types.get(name) for name in PROMETHEUS_NAMES} == PROMETHEUS_NAMES, sorted(
            n for n in types if "reclaim" in n or "usage" in n
        )
    finally:
        server.close()
        telemetry.shutdown()
