"""Cleaning a node against the real containerd: exact sizes, selectors, plans, and executing exactly a plan."""

from __future__ import annotations

import subprocess
import time

import pytest
from google.protobuf import field_mask_pb2, json_format, timestamp_pb2
from opentelemetry.sdk.trace import TracerProvider

from imageremoval.client import ConflictError, ImageRemovalClient, InvalidArgumentError, Platform
from imageremoval.gen.containerd.services.images.v1 import images_pb2
from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.server.config import ServerConfig
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import Reason

from .support.ctr import Ctr
from .support.images import Layer, Manifest, file_layer, index, manifest
from .support.interceptors import RecordingInterceptor
from .support.server import ServerThread
from .support.store import LABEL_PARENT, Store

PINNED = {"io.cri-containerd.pinned": "pinned"}


def lib(name: str) -> str:
    return f"docker.io/library/{name}"


def dangling(image: Manifest) -> str:
    return f"moby-dangling@{image.blob.digest}"


def small(note: str, *shared: Layer) -> Manifest:
    return manifest((*shared, file_layer("f.txt", note.encode())), note=note)


def images_by_id(client: ImageRemovalClient, ns: str, **selector: object) -> dict[str, pb.Image]:
    chosen = pb.ImageSelector(**selector) if selector else None  # type: ignore[arg-type]
    return {i.id: i for i in client.list_images(namespace=ns, selector=chosen)}


def ctr_blob_sizes(ctr: Ctr, ns: str) -> dict[str, int]:
    """Every blob `ctr content ls` shows, with its size counted from `ctr content get` (independent of us)."""
    digests = [d for d in ctr(ns, "content", "ls", "-q").stdout.split() if d.startswith("sha256:")]
    sizes = {}
    for digest in digests:
        blob = subprocess.run(
            ["ctr", "--address", ctr.address, "-n", ns, "content", "get", digest], capture_output=True, check=True
        ).stdout
        sizes[digest] = len(blob)
    return sizes


def planned_ids(plan: pb.PrunePlan) -> set[str]:
    return {p.image.id for p in plan.images}


def skipped_ids(plan: pb.PrunePlan) -> dict[str, int]:
    return {s.image.id: s.reason for s in plan.skipped}


def execute(client: ImageRemovalClient, plan: pb.PrunePlan) -> list[pb.PruneProgress]:
    return list(client.execute_prune(plan))


# sizes


def test_content_bytes_are_the_content_stores_sizes(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str
) -> None:
    one = small("sizes-one")
    image_id = store.put(ns, [lib("sizes:1")], one)
    listed = images_by_id(client, ns)[image_id]
    on_disk = ctr_blob_sizes(ctr, ns)
    assert listed.content_bytes == sum(on_disk[b.digest] for b in one.blobs)
    assert listed.content_bytes == sum(on_disk.values())  # the only image: everything in the store is its own
    assert listed.unique_bytes == listed.content_bytes
    assert listed.snapshot_bytes == 0  # never unpacked
    assert list(listed.names) == ["sizes:1"]
    assert not listed.dangling


def test_shared_blobs_are_counted_once(client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str) -> None:
    shared = file_layer("shared.bin", b"s" * 5000)
    first, second = small("share-1", shared), small("share-2", shared)
    first_id = store.put(ns, [dangling(first)], first)
    second_id = store.put(ns, [dangling(second)], second)
    listed = images_by_id(client, ns)
    on_disk = ctr_blob_sizes(ctr, ns)
    own = {
        image_id: sum(on_disk[b.digest] for b in m.blobs) for image_id, m in ((first_id, first), (second_id, second))
    }
    assert listed[first_id].content_bytes == own[first_id]
    assert listed[first_id].unique_bytes == own[first_id] - on_disk[shared.blob.digest]
    assert listed[second_id].unique_bytes == own[second_id] - on_disk[shared.blob.digest]
    plan = client.plan_prune(namespace=ns)
    assert planned_ids(plan) == {first_id, second_id}
    assert plan.reclaimable_bytes == sum(on_disk.values())  # the shared layer once
    assert sum(r.bytes for r in plan.resources) == plan.reclaimable_bytes
    summary = execute(client, plan)[-1].summary
    assert summary.freed_bytes == summary.planned_bytes == plan.reclaimable_bytes
    assert ctr_blob_sizes(ctr, ns) == {}


def test_a_blob_another_image_keeps_is_not_reclaimable(client: ImageRemovalClient, store: Store, ns: str) -> None:
    shared = file_layer("kept.bin", b"k" * 3000)
    gone, named = small("unshared-gone", shared), small("unshared-named", shared)
    gone_id = store.put(ns, [dangling(gone)], gone)
    store.put(ns, [lib("keeper:1")], named)
    plan = client.plan_prune(namespace=ns)
    assert planned_ids(plan) == {gone_id}
    assert plan.reclaimable_bytes == gone.blob.size + gone.config.size + gone.layers[1].blob.size
    assert store.has(ns, shared.blob.digest)


def _unpacked(busybox: Layer, note: str) -> Manifest:
    """A runnable image whose chain ID is its own (busybox plus a layer of its own)."""
    return manifest((busybox, file_layer("note.txt", note.encode())), note=note)


def _rename_to_dangling(store: Store, ns: str, name: str, image: Manifest) -> None:
    """What `docker rmi -f` leaves of an image a container uses: only its dangling record."""
    store.create_record(ns, dangling(image), image.blob)
    store.delete_record(ns, name)


def test_dangling_versus_all_with_a_running_and_a_stopped_container(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    loose = small("loose")
    loose_id = store.put(ns, [dangling(loose)], loose)
    named = small("named-unused")
    named_id = store.put(ns, [lib("unused:1")], named)
    running = _unpacked(busybox, "running-dangling")
    running_id = store.put(ns, [lib("runs:1")], running)
    ctr.run_detached(ns, lib("runs:1"), "runner")
    _rename_to_dangling(store, ns, lib("runs:1"), running)
    stopped = _unpacked(busybox, "stopped-named")
    stopped_id = store.put(ns, [lib("stops:1")], stopped)
    ctr.create(ns, lib("stops:1"), "sleeper")

    listed = images_by_id(client, ns)
    assert (listed[running_id].running_containers, listed[running_id].stopped_containers) == (1, 0)
    assert (listed[stopped_id].running_containers, listed[stopped_id].stopped_containers) == (0, 1)
    assert listed[running_id].dangling and list(listed[running_id].names) == []
    assert listed[running_id].snapshot_bytes == store.unpacked_bytes(ns, running.config.digest) > 0
    assert listed[loose_id].snapshot_bytes == 0

    plan = client.plan_prune(namespace=ns)
    assert planned_ids(plan) == {loose_id}
    assert skipped_ids(plan) == {running_id: pb.SKIP_REASON_IN_USE}
    everything = client.plan_prune(namespace=ns, selector=pb.ImageSelector(all_unused=True))
    assert planned_ids(everything) == {loose_id, named_id}
    assert skipped_ids(everything) == {running_id: pb.SKIP_REASON_IN_USE, stopped_id: pb.SKIP_REASON_IN_USE}

    progress = execute(client, everything)
    assert {p.removed.image_id for p in progress if p.HasField("removed")} == {loose_id, named_id}
    assert store.names(ns) == {dangling(running), lib("stops:1")}
    assert store.all_present(ns, running) and store.all_present(ns, stopped)
    assert ctr.task_status(ns, "runner") == "RUNNING"


# selector fields


def _stamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def test_created_before_is_strictly_before(client: ImageRemovalClient, store: Store, ns: str) -> None:
    old = small("until-old")
    old_id = store.put(ns, [dangling(old)], old)
    created = images_by_id(client, ns)[old_id].created
    time.sleep(0.01)
    new = small("until-new")
    store.put(ns, [dangling(new)], new)
    cut = pb.ImageSelector(created_before=created)
    assert images_by_id(client, ns, created_before=created) == {}  # not strictly before itself
    after_old = timestamp_pb2.Timestamp()
    after_old.FromNanoseconds(created.ToNanoseconds() + 1)
    assert set(images_by_id(client, ns, created_before=after_old)) == {old_id}
    assert planned_ids(client.plan_prune(namespace=ns, selector=pb.ImageSelector(created_before=after_old))) == {old_id}
    assert planned_ids(client.plan_prune(namespace=ns, selector=cut)) == set()


def test_label_matches_key_value_and_their_negations(client: ImageRemovalClient, store: Store, ns: str) -> None:
    both = small("label-both")
    both_id = store.put(ns, [lib("lab:both")], both, labels={"team": "a", "tier": "x"})
    other = small("label-other")
    other_id = store.put(ns, [lib("lab:other")], other, labels={"team": "b"})
    bare = small("label-bare")
    bare_id = store.put(ns, [lib("lab:bare")], bare)

    def chosen(*labels: pb.LabelMatch) -> set[str]:
        return set(images_by_id(client, ns, all_unused=True, labels=list(labels)))

    assert chosen(pb.LabelMatch(key="team")) == {both_id, other_id}
    assert chosen(pb.LabelMatch(key="team", negate=True)) == {bare_id}
    assert chosen(pb.LabelMatch(key="team", value="a")) == {both_id}
    assert chosen(pb.LabelMatch(key="team", value="a", negate=True)) == {other_id, bare_id}
    assert chosen(pb.LabelMatch(key="team"), pb.LabelMatch(key="tier", negate=True)) == {other_id}
    # Docker's label filter also sees the image config's labels.
    assert chosen(pb.LabelMatch(key="note", value="label-bare")) == {bare_id}
    plan = client.plan_prune(
        namespace=ns, selector=pb.ImageSelector(all_unused=True, labels=[pb.LabelMatch(key="team", negate=True)])
    )
    assert planned_ids(plan) == {bare_id}


def test_reference_globs_match_the_familiar_name_with_and_without_tag(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    app = store.put(ns, [lib("app:1.0")], small("ref-app"))
    tool = store.put(ns, ["example.com/team/tool:dev"], small("ref-tool"))
    loose = small("ref-loose")
    store.put(ns, [dangling(loose)], loose)

    def chosen(*globs: str) -> set[str]:
        return set(images_by_id(client, ns, all_unused=True, references=list(globs)))

    assert chosen("app") == {app}  # without its tag
    assert chosen("app:1.*") == {app}
    assert chosen("example.com/*/tool") == {tool}
    assert chosen("*") == {app}  # `*` does not cross `/`, and a dangling image has no name
    assert chosen("app:2*", "example.com/team/*:dev") == {tool}  # any may match
    with pytest.raises(InvalidArgumentError) as caught:
        chosen("app[")
    assert caught.value.reason == Reason.INVALID_SELECTOR


def test_keep_latest_per_repository_counts_every_image_of_the_repository(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    ids = []
    for n in range(3):
        ids.append(store.put(ns, [lib(f"keep:{n}")], small(f"keep-{n}")))
        time.sleep(0.01)
    used = _unpacked(busybox, "keep-used")
    used_id = store.put(ns, [lib("keep:used")], used)
    ctr.create(ns, lib("keep:used"), "user")
    also = store.put(ns, [lib("keep:also"), lib("other:1")], small("keep-two-repos"))
    plan = client.plan_prune(namespace=ns, selector=pb.ImageSelector(all_unused=True, keep_latest_per_repository=2))
    # newest two of `keep`: `also` and `used` (in use, still counted); `other` keeps `also` too.
    assert skipped_ids(plan) == {used_id: pb.SKIP_REASON_IN_USE, also: pb.SKIP_REASON_KEPT}
    assert planned_ids(plan) == set(ids)
    plan3 = client.plan_prune(namespace=ns, selector=pb.ImageSelector(all_unused=True, keep_latest_per_repository=3))
    assert planned_ids(plan3) == {ids[0], ids[1]}
    assert skipped_ids(plan3)[ids[2]] == pb.SKIP_REASON_KEPT


def test_protected_and_pinned_images_are_never_planned(client: ImageRemovalClient, store: Store, ns: str) -> None:
    pause = store.put(ns, ["registry.k8s.io/pause:3.9"], small("pause"))
    pinned = small("pinned-dangling")
    pinned_id = store.put(ns, [dangling(pinned)], pinned, labels=PINNED)
    free = store.put(ns, [lib("free:1")], small("free"))
    plan = client.plan_prune(namespace=ns, selector=pb.ImageSelector(all_unused=True))
    assert planned_ids(plan) == {free}
    assert skipped_ids(plan) == {pause: pb.SKIP_REASON_PROTECTED, pinned_id: pb.SKIP_REASON_PROTECTED}
    listed = images_by_id(client, ns)
    assert listed[pause].protected and listed[pause].protected_rule == "registry.k8s.io/pause:*"
    assert listed[pinned_id].protected_rule == "label io.cri-containerd.pinned=pinned"
    execute(client, plan)
    assert store.names(ns) == {"registry.k8s.io/pause:3.9", dangling(pinned)}


def test_a_parent_a_kept_image_builds_on_is_never_planned(client: ImageRemovalClient, store: Store, ns: str) -> None:
    parent = small("parent-of-kept")
    parent_id = store.put(ns, [dangling(parent)], parent)
    store.put(ns, [lib("child:1")], small("child-kept"), labels={LABEL_PARENT: parent_id})
    plan = client.plan_prune(namespace=ns)
    assert planned_ids(plan) == set()
    assert skipped_ids(plan) == {parent_id: pb.SKIP_REASON_PARENT_OF_KEPT}


def test_children_are_removed_before_their_parents(client: ImageRemovalClient, store: Store, ns: str) -> None:
    parent = small("chain-parent")
    parent_id = store.put(ns, [dangling(parent)], parent)
    child = small("chain-child")
    child_id = store.put(ns, [dangling(child)], child, labels={LABEL_PARENT: parent_id})
    plan = client.plan_prune(namespace=ns)
    assert [p.image.id for p in plan.images] == [child_id, parent_id]
    assert [p.removed.image_id for p in execute(client, plan) if p.HasField("removed")] == [child_id, parent_id]
    assert store.names(ns) == set()


# executing exactly the plan


def test_a_plan_skips_what_changed_got_a_container_or_was_pinned_since(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    retagged = small("exec-retagged")
    retagged_id = store.put(ns, [lib("retag:1")], retagged)
    used = _unpacked(busybox, "exec-used")
    used_id = store.put(ns, [lib("used:1")], used)
    pinned = small("exec-pinned")
    pinned_id = store.put(ns, [lib("pin:1")], pinned)
    rest = [small(f"exec-rest-{n}") for n in range(3)]
    rest_ids = {store.put(ns, [lib(f"rest:{n}")], m) for n, m in enumerate(rest)}
    plan = client.plan_prune(namespace=ns, selector=pb.ImageSelector(all_unused=True))
    assert planned_ids(plan) == {retagged_id, used_id, pinned_id, *rest_ids}

    assert store.tag(ns, lib("retag:1"), lib("retag:2"))
    ctr.create(ns, lib("used:1"), "late-user")
    # The whole record with its target: containerd 2.4 crashes on an Update whose image has no target.
    record = store.images.Get(images_pb2.GetImageRequest(name=lib("pin:1")), metadata=store.md(ns)).image
    record.labels.update(PINNED)
    store.images.Update(
        images_pb2.UpdateImageRequest(
            image=record, update_mask=field_mask_pb2.FieldMask(paths=["labels.io.cri-containerd.pinned"])
        ),
        metadata=store.md(ns),
    )

    progress = execute(client, plan)
    skipped = {p.skipped.image.id: p.skipped.reason for p in progress if p.HasField("skipped")}
    assert skipped == {
        retagged_id: pb.SKIP_REASON_CHANGED,
        used_id: pb.SKIP_REASON_IN_USE,
        pinned_id: pb.SKIP_REASON_PROTECTED,
    }
    assert {p.removed.image_id for p in progress if p.HasField("removed")} == rest_ids
    summary = progress[-1].summary
    assert (summary.images_removed, summary.images_skipped) == (3, 3)
    assert 0 < summary.freed_bytes <= summary.planned_bytes < plan.reclaimable_bytes
    assert summary.freed_bytes == sum(b.size for m in rest for b in m.blobs)
    assert store.names(ns) == {lib("retag:1"), lib("retag:2"), lib("used:1"), lib("pin:1")}
    assert all(store.all_present(ns, m) for m in (retagged, used, pinned))


def test_a_plan_not_signed_by_the_server_is_invalid_argument(client: ImageRemovalClient, store: Store, ns: str) -> None:
    loose = small("forged")
    store.put(ns, [dangling(loose)], loose)
    plan = client.plan_prune(namespace=ns)
    forged = pb.PrunePlan()
    forged.CopyFrom(plan)
    forged.namespace = "default"
    for bad in (forged, pb.PrunePlan(namespace=ns, images=plan.images)):
        with pytest.raises(InvalidArgumentError) as caught:
            execute(client, bad)
        assert caught.value.reason == Reason.INVALID_PLAN
    assert store.names(ns) == {dangling(loose)}
    roundtrip = pb.PrunePlan.FromString(plan.SerializeToString())
    assert json_format.Parse(json_format.MessageToJson(plan), pb.PrunePlan()) == roundtrip
    assert (
        execute(client, json_format.Parse(json_format.MessageToJson(plan), pb.PrunePlan()))[-1].summary.images_removed
        == 1
    )


def test_executing_a_plan_twice_removes_nothing_the_second_time(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    loose = small("twice")
    store.put(ns, [dangling(loose)], loose)
    plan = client.plan_prune(namespace=ns)
    assert execute(client, plan)[-1].summary.images_removed == 1
    again = execute(client, plan)
    assert [p.skipped.reason for p in again if p.HasField("skipped")] == [pb.SKIP_REASON_CHANGED]
    assert again[-1].summary.freed_bytes == 0


def test_a_cancelled_execution_stops_between_images(client: ImageRemovalClient, store: Store, ns: str) -> None:
    images = [small(f"cancel-{n}") for n in range(100)]
    for image in images:
        store.put(ns, [dangling(image)], image)
    plan = client.plan_prune(namespace=ns)
    assert len(plan.images) == 100
    stream = client.execute_prune(plan)
    seen = [next(stream) for _ in range(3)]
    stream.close()  # cancels the call
    assert all(p.HasField("removed") for p in seen)
    remaining: set[str] = set()
    for _ in range(50):  # the removal in flight when the cancel arrived still finishes
        before = store.names(ns)
        time.sleep(0.1)
        remaining = store.names(ns)
        if remaining == before:
            break
    assert 3 <= 100 - len(remaining) < 100  # stopped: not every image went
    for image in images:  # what stays is whole (the ns fixture checks every record's content too)
        if dangling(image) in remaining:
            assert store.all_present(ns, image)


def test_a_thousand_image_plan_is_paged_and_streamed(client: ImageRemovalClient, store: Store, ns: str) -> None:
    # One layer and config shared by all; a manifest annotation makes each a distinct image (2 writes each).
    layer = file_layer("n", b"thousand")
    images = [manifest((layer,), note="thousand", annotations={"n": str(n)}) for n in range(1000)]
    with store.lease(ns) as lease:
        store.write_manifest(ns, images[0], lease)
        for image in images:
            store.write_blob(ns, image.blob, lease, image.gc_labels())
            store.create_record(ns, dangling(image), image.blob)
    ids: list[str] = []
    token = ""
    pages = 0
    while True:
        page = client.list_page(pb.ListImagesRequest(namespace=ns, page_size=100, page_token=token))
        pages += 1
        token = page.next_page_token
        assert len(page.images) == 100  # full pages, and the last one too (1000 = 10 x 100)
        ids.extend(i.id for i in page.images)
        if not token:
            break
    assert pages == 10 and len(set(ids)) == 1000
    assert len(client.list_page(pb.ListImagesRequest(namespace=ns, page_size=5000)).images) == 1000  # at most 1000
    last = client.list_page(pb.ListImagesRequest(namespace=ns, page_size=300, page_token=""))
    assert last.next_page_token
    plan = client.plan_prune(namespace=ns)
    assert len(plan.images) == 1000
    progress = execute(client, plan)
    assert len(progress) == 1001 and progress[-1].HasField("summary")
    summary = progress[-1].summary
    assert summary.images_removed == 1000
    assert (
        summary.freed_bytes
        == summary.planned_bytes
        == plan.reclaimable_bytes
        == (sum(m.blob.size for m in images) + layer.blob.size + images[0].config.size)
    )
    assert store.names(ns) == set()


def test_page_tokens_and_sizes_are_checked(client: ImageRemovalClient, ns: str) -> None:
    for request in (
        pb.ListImagesRequest(namespace=ns, page_token="not a token"),
        pb.ListImagesRequest(namespace=ns, page_size=-1),
    ):
        with pytest.raises(InvalidArgumentError) as caught:
            client.list_page(request)
        assert caught.value.reason == Reason.INVALID_PAGE_TOKEN


# RemoveImage.validate_only and reclaimable_bytes


def test_validate_only_changes_nothing_and_says_what_it_would_free(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    shared = file_layer("vo-shared", b"v" * 2000)
    image = small("validate", shared)
    image_id = store.put(ns, [lib("vo:1"), lib("vo:2")], image)
    store.put(ns, [lib("other:1")], small("validate-other", shared))
    items, would_free = client.remove_measured(image_id, namespace=ns, force=True, validate_only=True)
    assert [str(i) for i in items] == ["Untagged: vo:1", "Untagged: vo:2", f"Deleted: {image_id}"]
    assert would_free == image.blob.size + image.config.size + image.layers[1].blob.size
    assert store.names(ns) == {lib("vo:1"), lib("vo:2"), lib("other:1")} and store.all_present(ns, image)
    with pytest.raises(ConflictError):  # the same errors: several repositories by ID need force
        client.remove(image_id, namespace=ns, validate_only=True)
    assert client.remove_measured("vo:1", namespace=ns, validate_only=True) == ([items[0]], 0)  # an untag frees 0
    real_items, freed = client.remove_measured(image_id, namespace=ns, force=True)
    assert real_items == items and freed == would_free
    assert store.intact(ns, shared.blob.digest)


def test_an_execution_waits_for_exactly_one_collection(containerd: PrivateContainerd, store: Store, ns: str) -> None:
    recorder = RecordingInterceptor()
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0"), containerd.address, TracerProvider(), containerd_interceptors=[recorder]
    )
    images = [small(f"one-gc-{n}") for n in range(5)]
    for image in images:
        store.put(ns, [dangling(image)], image)
    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client:
            summary = execute(client, client.plan_prune(namespace=ns))[-1].summary
    finally:
        thread.stop()
    assert summary.images_removed == 5
    assert [d.sync for d in recorder.deletes()] == [False] * 5
    collections = [r for m, r in recorder.calls if m.endswith(".Leases/Delete") and r.sync]
    assert len(collections) == 1
    assert not any(store.has(ns, b.digest) for image in images for b in image.blobs)


def test_reclaimable_bytes_count_unpacked_snapshots_predicted_and_measured(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = _unpacked(busybox, "reclaim-snapshots")
    image_id = store.put(ns, [lib("unpacked:1")], image)
    ctr.create(ns, lib("unpacked:1"), "unpacker")  # unpacks the layers into snapshots
    ctr(ns, "containers", "delete", "unpacker")
    unpacked = store.unpacked_bytes(ns, image.config.digest)
    assert unpacked > 0
    listed = images_by_id(client, ns)[image_id]
    assert listed.snapshot_bytes == unpacked and listed.unique_bytes == listed.content_bytes + unpacked
    blobs = sum(b.size for b in image.blobs)
    _, would_free = client.remove_measured("unpacked:1", namespace=ns, validate_only=True)
    assert would_free == blobs + unpacked
    _, freed = client.remove_measured("unpacked:1", namespace=ns)
    assert freed == would_free
    assert store.snapshot_keys(ns) == set()


def test_validate_only_of_a_platform_counts_what_only_that_platform_holds(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    shared = file_layer("plat-shared", b"p" * 1500)
    amd = manifest((shared, file_layer("amd", b"amd")), note="vo-amd")
    arm = manifest((shared, file_layer("arm", b"arm")), architecture="arm64", variant="v8", note="vo-arm")
    image_id = store.put(ns, [lib("multi:1")], index((amd, arm)))
    items, would_free = client.remove_measured(
        "multi:1", namespace=ns, force=True, platforms=[Platform("linux", "arm64", "v8")], validate_only=True
    )
    assert [i.value for i in items] == [arm.blob.digest]
    assert would_free == arm.blob.size + arm.config.size + arm.layers[1].blob.size
    assert store.all_present(ns, index((amd, arm))) and store.target(ns, lib("multi:1")) == image_id
