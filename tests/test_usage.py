"""Usage recorded on the image records against the real containerd: first seen, last used, ages, rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.server.config import UsageSettings
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.usage import LABEL_FIRST_SEEN, LABEL_LAST_USED, format_stamp

from .support.ctr import Ctr
from .support.images import Layer, file_layer, manifest
from .support.store import Store
from .support.usage import DAY_NS, Tracked, lib, own_update, runnable


@pytest.fixture
def tracked(containerd: PrivateContainerd) -> Iterator[Callable[..., Tracked]]:
    made: list[Tracked] = []

    def make(**usage: object) -> Tracked:
        settings = UsageSettings(**{"sweep_interval_s": 3600.0, "min_age_s": 0.0, **usage})  # type: ignore[arg-type]
        made.append(Tracked(containerd.address, settings))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_first_seen_is_a_label_on_the_record_that_survives_a_server_restart(
    tracked: Callable[..., Tracked], store: Store, ns: str
) -> None:
    first = tracked()
    image_id = store.put(ns, [lib("seen:1")], manifest((file_layer("a", b"seen"),), note="seen"))
    created = {r.name: r.created_at.ToNanoseconds() for r in store.records(ns)}
    listed = first.image_with(ns, image_id, "first_seen")
    assert listed.age_basis == pb.AGE_BASIS_FIRST_SEEN_ONLY
    assert not listed.HasField("last_used")
    assert LABEL_FIRST_SEEN not in listed.labels  # shown as first_seen, not among the user's labels
    record = next(r for r in store.records(ns) if r.name == lib("seen:1"))
    assert record.labels[LABEL_FIRST_SEEN] == format_stamp(listed.first_seen.ToNanoseconds())
    assert record.created_at.ToNanoseconds() == created[lib("seen:1")]  # a label write is not a new record
    assert listed.created.ToNanoseconds() == created[lib("seen:1")]
    first.close()
    second = tracked()
    second.sweep(ns)
    again = second.image(ns, image_id)
    assert again is not None and again.first_seen == listed.first_seen
    assert second.label_writes() == 0  # nothing to write: the record already says it


def test_an_image_not_seen_yet_has_an_unknown_age(tracked: Callable[..., Tracked], store: Store, ns: str) -> None:
    server = tracked(enabled=False)
    image_id = store.put(ns, [lib("unknown:1")], manifest((file_layer("a", b"unknown"),), note="unknown"))
    listed = server.image(ns, image_id)
    assert listed is not None and listed.age_basis == pb.AGE_BASIS_UNKNOWN
    assert not listed.HasField("first_seen")


def test_a_container_started_and_stopped_moves_last_used(
    tracked: Callable[..., Tracked], store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    server = tracked(write_interval_s=0.0)
    image_id = store.put(ns, [lib("used:1")], runnable(busybox, "used"))
    server.sweep(ns)
    before = server.image(ns, image_id)
    assert before is not None and before.age_basis == pb.AGE_BASIS_FIRST_SEEN_ONLY
    # A container that starts, exits and is deleted between sweeps: only the events can see it.
    ctr(ns, "run", "--rm", lib("used:1"), "shortlived", "/bin/true")
    after = server.image_with(ns, image_id, "last_used")
    assert after.age_basis == pb.AGE_BASIS_OBSERVED_USE
    assert after.last_used.ToNanoseconds() >= before.first_seen.ToNanoseconds()
    assert after.created == before.created


def test_the_sweep_catches_a_container_created_while_the_server_was_down(
    tracked: Callable[..., Tracked], store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image_id = store.put(ns, [lib("missed:1")], runnable(busybox, "missed"))
    ctr.create(ns, lib("missed:1"), "while-down")
    server = tracked()
    server.sweep(ns)
    listed = server.image(ns, image_id)
    assert listed is not None and listed.HasField("last_used")
    assert listed.age_basis == pb.AGE_BASIS_OBSERVED_USE


def test_label_writes_stay_within_the_rate_limit_under_container_churn(
    tracked: Callable[..., Tracked], store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    server = tracked(write_interval_s=3600.0)
    image_id = store.put(ns, [lib("churn:1")], runnable(busybox, "churn"))
    server.image_with(ns, image_id, "first_seen")  # the /images/create event's write
    server.sweep(ns)
    first_seen_writes = server.label_writes()
    assert first_seen_writes == 1  # the sweep found it written: nothing more
    for round_ in range(20):
        ctr.create(ns, lib("churn:1"), f"churn-{round_}")
        ctr(ns, "containers", "delete", f"churn-{round_}")
    server.image_with(ns, image_id, "last_used")
    server.sweep(ns)
    # 20 creates and 20 deletes (80 events with the tasks'... none here) and a sweep: one last-used write.
    assert server.label_writes() - first_seen_writes == 1


def test_last_used_survives_a_containerd_restart(tmp_path: Path, busybox: Layer) -> None:
    daemon = PrivateContainerd(tmp_path / "restart")
    daemon.start()
    try:
        own, own_ctr = Store(daemon.address), Ctr(daemon.address)
        image_id = own.put("restart", [lib("kept:1")], runnable(busybox, "kept"))
        own_ctr.create("restart", lib("kept:1"), "user")
        server = Tracked(daemon.address, UsageSettings(sweep_interval_s=3600.0))
        server.sweep("restart")
        before = server.image("restart", image_id)
        assert before is not None and before.age_basis == pb.AGE_BASIS_OBSERVED_USE
        server.close()
        own_ctr.cleanup("restart")
        own.close()
        daemon.stop()
        daemon.start()
        own = Store(daemon.address)
        server = Tracked(daemon.address, UsageSettings(enabled=False))
        after = server.image("restart", image_id)
        assert after is not None and after.age_basis == pb.AGE_BASIS_OBSERVED_USE
        assert after.last_used == before.last_used and after.first_seen == before.first_seen
        server.close()
        own.close()
    finally:
        daemon.stop()


def test_unused_for_selects_by_last_use_and_never_an_image_of_unknown_or_young_age(
    tracked: Callable[..., Tracked], store: Store, ns: str
) -> None:
    server = tracked(enabled=False, min_age_s=0.0)
    old = store.put(ns, [lib("old:1")], manifest((file_layer("o", b"old"),), note="old"))
    recent = store.put(ns, [lib("recent:1")], manifest((file_layer("r", b"recent"),), note="recent"))
    unknown = store.put(ns, [lib("unknown:1")], manifest((file_layer("u", b"unknown"),), note="unknown"))
    now = time.time_ns()
    for name, age in ((lib("old:1"), 4 * DAY_NS), (lib("recent:1"), DAY_NS)):
        own_update(
            store,
            ns,
            name,
            {LABEL_FIRST_SEEN: format_stamp(now - 10 * DAY_NS), LABEL_LAST_USED: format_stamp(now - age)},
        )
    selector = pb.ImageSelector(all_unused=True, unused_for=duration_pb2.Duration(seconds=72 * 3600))
    listed = {i.id for i in server.client.list_images(namespace=ns, selector=selector)}
    assert listed == {old}
    planned = {p.image.id for p in server.client.plan_prune(namespace=ns, selector=selector).images}
    assert planned == {old} and recent not in planned and unknown not in planned


def test_an_image_pulled_a_moment_ago_is_never_pruned_by_age(
    tracked: Callable[..., Tracked], store: Store, ns: str
) -> None:
    server = tracked(enabled=False, min_age_s=120.0)
    image_id = store.put(ns, [lib("fresh:1")], manifest((file_layer("f", b"fresh"),), note="fresh"))
    long_ago = format_stamp(time.time_ns() - 30 * DAY_NS)  # labels copied from elsewhere say it is old
    own_update(store, ns, lib("fresh:1"), {LABEL_FIRST_SEEN: long_ago, LABEL_LAST_USED: long_ago})
    selector = pb.ImageSelector(all_unused=True, unused_for=duration_pb2.Duration(seconds=1))
    assert not server.client.plan_prune(namespace=ns, selector=selector).images
    steps = list(server.client.reclaim_space(namespace=ns, target_free_bytes=1 << 40))
    skipped = {s.skipped.image.id: s.skipped.reason for s in steps if s.HasField("skipped")}
    assert skipped == {image_id: pb.SKIP_REASON_TOO_YOUNG}
    assert steps[-1].summary.images_removed == 0
    assert steps[-1].summary.stop_reason == "nothing more may go"
    assert store.target(ns, lib("fresh:1")) == image_id
