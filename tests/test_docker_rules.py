"""Docker's removal rules (reference section A) and the gaps we close (section B), one test per rule."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from google.protobuf import any_pb2

from imageremoval.client import ConflictError, ImageRemovalClient, ImageRemovalError, Platform
from imageremoval.gen.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from imageremoval.server.domain.errors import Reason

from .support.ctr import Ctr
from .support.images import MEDIA_CONFIG, MEDIA_MANIFEST, Blob, Layer, Manifest, file_layer, index, manifest
from .support.items import deleted, pairs, untagged
from .support.store import LABEL_PARENT, Store


def lib(name: str) -> str:
    """The stored form of an official-image name."""
    return f"docker.io/library/{name}"


def small(note: str) -> Manifest:
    return manifest((file_layer("f.txt", note.encode()),), note=note)


def conflict_of(error: ImageRemovalError) -> tuple[str, str, str]:
    return error.reason, error.metadata.get("conflict", ""), error.metadata.get("forceable", "")


# Untag or delete (Docker's table tests)


def test_just_one_ref_deletes_the_image(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image_id = store.put(ns, [lib("a:latest")], small("one"))
    assert pairs(client.remove("a", namespace=ns)) == [untagged("a:latest"), deleted(image_id)]


def test_two_repos_by_name_untags_only_that_name(client: ImageRemovalClient, store: Store, ns: str) -> None:
    store.put(ns, [lib("a:latest"), lib("b:latest")], small("two"))
    assert pairs(client.remove("a", namespace=ns)) == [untagged("a:latest")]
    assert store.names(ns) == {lib("b:latest")}


def test_name_plus_digest_record_go_together(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image = small("digest-record")
    image_id = store.put(ns, [lib("a:latest"), lib(f"a@{image.blob.digest}")], image)
    assert pairs(client.remove("a:latest", namespace=ns)) == [
        untagged("a:latest"),
        untagged(f"a@{image_id}"),
        deleted(image_id),
    ]
    assert store.names(ns) == set()


def test_by_id_untags_every_name_and_deletes(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image_id = store.put(ns, [lib("a:latest")], small("by-id"))
    assert pairs(client.remove(image_id, namespace=ns)) == [untagged("a:latest"), deleted(image_id)]


def test_by_name_at_digest_untags_every_tag_of_that_repository(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    image_id = store.put(ns, [lib("a:1"), lib("a:2"), lib("b:1")], small("at-digest"))
    assert pairs(client.remove(f"a@{image_id}", namespace=ns)) == [untagged("a:1"), untagged("a:2")]
    assert store.names(ns) == {lib("b:1")}


def test_one_ref_of_two_tags_untags_it(client: ImageRemovalClient, store: Store, ns: str) -> None:
    store.put(ns, [lib("a:1"), lib("a:2")], small("two-tags"))
    assert pairs(client.remove("a:1", namespace=ns)) == [untagged("a:1")]
    assert store.names(ns) == {lib("a:2")}


def test_other_repository_remaining_keeps_the_image(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image = small("other-repo")
    store.put(ns, [lib("a:1"), "example.com/b:1"], image)
    assert pairs(client.remove("a:1", namespace=ns)) == [untagged("a:1")]
    assert store.names(ns) == {"example.com/b:1"}
    assert store.all_present(ns, image)


def test_digest_only_record_stays_while_other_tags_remain(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image = small("digest-only")
    store.put(ns, [lib("a:1"), lib(f"a@{image.blob.digest}"), lib("a:2")], image)
    assert pairs(client.remove("a:1", namespace=ns)) == [untagged("a:1")]
    assert store.names(ns) == {lib(f"a@{image.blob.digest}"), lib("a:2")}


def test_not_found_names_the_reference_with_its_tag(client: ImageRemovalClient, ns: str) -> None:
    with pytest.raises(ImageRemovalError) as caught:
        client.remove("example.com/missing:9", namespace=ns)
    assert (caught.value.code, caught.value.reason) == ("NOT_FOUND", Reason.IMAGE_NOT_FOUND)
    assert caught.value.message == "No such image: example.com/missing:9"


def test_by_id_naming_several_repositories_needs_force(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image_id = store.put(ns, [lib("a:latest"), lib("b:latest")], small("multi"))
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id[7:19], namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "MULTIPLE_REFERENCES", "true")
    assert caught.value.message == (
        f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is referenced in multiple repositories"
    )
    assert store.names(ns) == {lib("a:latest"), lib("b:latest")}
    assert pairs(client.remove(image_id[7:19], namespace=ns, force=True)) == [
        untagged("a:latest"),
        untagged("b:latest"),
        deleted(image_id),
    ]


# Conflicts with real containers, checked before anything changes


def test_running_container_by_id_cannot_be_forced(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="running-by-id")
    image_id = store.put(ns, [lib("bb:latest")], image)
    ctr.run_detached(ns, lib("bb:latest"), "runner")
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns, force=True)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "RUNNING_CONTAINER", "false")
    assert caught.value.metadata["container"] == "runner"
    assert caught.value.message == (
        f"conflict: unable to delete {image_id[7:19]} (cannot be forced) - "
        "image is being used by running container runner"
    )
    assert store.names(ns) == {lib("bb:latest")}
    assert ctr.task_status(ns, "runner") == "RUNNING"


def test_paused_container_is_a_hard_conflict(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image_id = store.put(ns, [lib("bb:latest")], manifest((busybox,), note="paused"))
    ctr.run_detached(ns, lib("bb:latest"), "paused")
    ctr(ns, "tasks", "pause", "paused")
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns, force=True)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "RUNNING_CONTAINER", "false")


def test_running_container_by_name_needs_force(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image_id = store.put(ns, [lib("bb:latest")], manifest((busybox,), note="running-by-name"))
    ctr.run_detached(ns, lib("bb:latest"), "runner")
    with pytest.raises(ConflictError) as caught:
        client.remove("bb", namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "RUNNING_CONTAINER", "true")
    assert caught.value.message == (
        f"conflict: unable to delete bb:latest (must be forced) - container runner is using its referenced "
        f"image {image_id[7:19]}"
    )
    assert store.names(ns) == {lib("bb:latest")}


def test_force_by_name_on_a_used_image_untags_and_keeps_a_dangling_record(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="force-by-name")
    image_id = store.put(ns, [lib("bb:latest")], image)
    ctr.run_detached(ns, lib("bb:latest"), "runner")
    with store.record_events(ns, expect=1) as events:
        assert pairs(client.remove("bb", namespace=ns, force=True)) == [untagged("bb:latest")]
    assert store.names(ns) == {f"moby-dangling@{image_id}"}
    assert store.all_present(ns, image)
    assert ctr.task_status(ns, "runner") == "RUNNING"
    assert events.ours() == [("/imageremoval/untag", "bb:latest")]


def test_dangling_record_that_already_exists_is_fine(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="already-dangling")
    image_id = store.put(ns, [lib("bb:latest"), lib("bb:other")], image)
    store.create_record(ns, f"moby-dangling@{image_id}", image.blob)
    ctr.create(ns, lib("bb:latest"), "stopped")
    assert pairs(client.remove("bb:other", namespace=ns)) == [untagged("bb:other")]
    assert pairs(client.remove("bb", namespace=ns, force=True)) == [untagged("bb:latest")]
    assert store.names(ns) == {f"moby-dangling@{image_id}"}


def test_stopped_container_by_id_needs_force(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="stopped-by-id")
    image_id = store.put(ns, [lib("bb:latest")], image)
    ctr.create(ns, lib("bb:latest"), "stopped")
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "STOPPED_CONTAINER", "true")
    assert caught.value.message == (
        f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
        "image is being used by stopped container stopped"
    )
    assert store.all_present(ns, image) and store.names(ns) == {lib("bb:latest")}


def test_stopped_container_by_id_with_force_deletes(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image_id = store.put(ns, [lib("bb:latest")], manifest((busybox,), note="stopped-forced"))
    ctr.run_detached(ns, lib("bb:latest"), "exited", "/bin/true")
    ctr.stop_task(ns, "exited")
    assert pairs(client.remove(image_id, namespace=ns, force=True)) == [
        untagged("bb:latest"),
        deleted(image_id),
    ]
    assert store.names(ns) == set()


def test_a_container_from_another_tag_uses_the_same_image(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image_id = store.put(ns, [lib("bb:3"), lib("bb:latest")], manifest((busybox,), note="other-tag"))
    ctr.create(ns, lib("bb:3"), "from-tag-3")
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns)
    assert conflict_of(caught.value)[1] == "STOPPED_CONTAINER"
    assert caught.value.metadata["container"] == "from-tag-3"


def test_a_container_whose_image_name_is_gone_is_matched_by_its_snapshot(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    store.put(ns, [lib("bb:3"), lib("bb:latest")], manifest((busybox,), note="lineage"))
    ctr.create(ns, lib("bb:3"), "orphan")
    assert pairs(client.remove("bb:3", namespace=ns)) == [untagged("bb:3")]
    with pytest.raises(ConflictError) as caught:
        client.remove("bb:latest", namespace=ns)
    assert caught.value.metadata["container"] == "orphan"
    assert store.names(ns) == {lib("bb:latest")}


# Prune


def _chain(store: Store, ns: str) -> tuple[str, str, str]:
    """grandparent <- parent (both dangling) <- child `app:latest`."""
    # Records are created while the content is still leased: an unreferenced blob may be collected any time.
    grandparent = store.put(ns, [f"moby-dangling@{small('grandparent').blob.digest}"], small("grandparent"))
    parent_image = small("parent")
    parent = store.put(
        ns, [f"moby-dangling@{parent_image.blob.digest}"], parent_image, labels={LABEL_PARENT: grandparent}
    )
    child = store.put(ns, [lib("app:latest")], small("child"), labels={LABEL_PARENT: parent})
    return grandparent, parent, child


def test_prune_deletes_the_dangling_parent_chain(client: ImageRemovalClient, store: Store, ns: str) -> None:
    grandparent, parent, child = _chain(store, ns)
    with store.record_events(ns, expect=4) as events:
        items = client.remove("app", namespace=ns)
    assert pairs(items) == [untagged("app:latest"), deleted(child), deleted(parent), deleted(grandparent)]
    assert store.names(ns) == set()
    assert events.ours() == [
        ("/imageremoval/untag", "app:latest"),
        ("/imageremoval/delete", child),
        ("/imageremoval/delete", parent),
        ("/imageremoval/delete", grandparent),
    ]


def test_no_prune_keeps_the_parents(client: ImageRemovalClient, store: Store, ns: str) -> None:
    grandparent, parent, child = _chain(store, ns)
    assert pairs(client.remove("app", namespace=ns, no_prune=True)) == [
        untagged("app:latest"),
        deleted(child),
    ]
    assert store.names(ns) == {f"moby-dangling@{grandparent}", f"moby-dangling@{parent}"}


def test_prune_stops_quietly_at_a_parent_a_container_uses(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    base = manifest((busybox,), note="used-parent")
    parent = store.put(ns, [lib("base:latest")], base)
    ctr.create(ns, lib("base:latest"), "uses-parent")
    store.create_record(ns, f"moby-dangling@{parent}", base.blob)  # before the name goes: content stays held
    store.delete_record(ns, lib("base:latest"))
    child = store.put(ns, [lib("app:latest")], small("child-of-used"), labels={LABEL_PARENT: parent})
    assert pairs(client.remove("app", namespace=ns)) == [untagged("app:latest"), deleted(child)]
    assert store.names(ns) == {f"moby-dangling@{parent}"}


def test_prune_stops_at_a_parent_that_is_still_named(client: ImageRemovalClient, store: Store, ns: str) -> None:
    parent = store.put(ns, [lib("base:latest")], small("named-parent"))
    child = store.put(ns, [lib("app:latest")], small("child-of-named"), labels={LABEL_PARENT: parent})
    assert pairs(client.remove("app", namespace=ns)) == [untagged("app:latest"), deleted(child)]
    assert store.names(ns) == {lib("base:latest")}


def test_last_name_of_an_image_with_children_becomes_dangling(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    base = small("base-with-child")
    parent = store.put(ns, [lib("base:latest")], base)
    store.put(ns, [lib("app:latest")], small("child-of-base"), labels={LABEL_PARENT: parent})
    # A record remains, so nothing is reported deleted (Docker would print Deleted: here).
    assert pairs(client.remove("base", namespace=ns)) == [untagged("base:latest")]
    assert store.names(ns) == {f"moby-dangling@{parent}", lib("app:latest")}
    assert store.all_present(ns, base)


# Platforms


def _multi(store: Store, ns: str, name: str = "multi:latest") -> tuple[Manifest, Manifest, str]:
    shared = file_layer("shared.txt", b"layer shared by both platforms")
    amd = manifest((shared, file_layer("x", b"amd64")), architecture="amd64", note="amd")
    arm = manifest((shared, file_layer("x", b"arm64")), architecture="arm64", variant="v8", note="arm")
    s390 = manifest((file_layer("x", b"s390x"),), architecture="s390x", note="s390")
    image_id = store.put(ns, [lib(name)], index((amd, arm, s390)), missing=[s390])
    return amd, arm, image_id


def test_platform_removal_requires_force(client: ImageRemovalClient, store: Store, ns: str) -> None:
    _multi(store, ns)
    with pytest.raises(ImageRemovalError) as caught:
        client.remove("multi", namespace=ns, platforms=[Platform("linux", "arm64", "v8")])
    assert (caught.value.code, caught.value.reason) == ("INVALID_ARGUMENT", Reason.FORCE_REQUIRED)


def test_platform_that_is_not_present_is_not_found(client: ImageRemovalClient, store: Store, ns: str) -> None:
    _multi(store, ns)
    for absent in (Platform("linux", "s390x"), Platform("windows", "amd64")):
        with pytest.raises(ImageRemovalError) as caught:
            client.remove("multi", namespace=ns, force=True, platforms=[absent])
        assert (caught.value.code, caught.value.reason) == ("NOT_FOUND", Reason.PLATFORM_NOT_FOUND)


def test_platform_removal_deletes_only_that_platform(client: ImageRemovalClient, store: Store, ns: str) -> None:
    amd, arm, image_id = _multi(store, ns)
    with store.record_events(ns, expect=1) as events:
        items = client.remove("multi", namespace=ns, force=True, platforms=[Platform("linux", "arm64")])
    assert pairs(items) == [deleted(arm.blob.digest)]
    assert store.names(ns) == {lib("multi:latest")}
    assert not store.has(ns, arm.blob.digest) and not store.has(ns, arm.layers[1].blob.digest)
    assert all(store.intact(ns, b.digest) for b in amd.blobs), "the shared layer and the other platform stay"
    assert events.ours() == [("/imageremoval/delete", arm.blob.digest)]
    assert image_id == store.target(ns, lib("multi:latest"))


def test_platform_removal_keeps_a_manifest_another_index_shares(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    _, arm, _ = _multi(store, ns)
    other = index((arm,))
    store.put(ns, [lib("other:latest")], other)
    items = client.remove("multi", namespace=ns, force=True, platforms=[Platform("linux", "arm64", "v8")])
    assert pairs(items) == [deleted(arm.blob.digest)]
    assert all(store.intact(ns, b.digest) for b in arm.blobs), "other:latest still needs the arm64 manifest"


def test_platforms_of_a_single_platform_image_are_refused(client: ImageRemovalClient, store: Store, ns: str) -> None:
    store.put(ns, [lib("single:latest")], small("single"))
    with pytest.raises(ImageRemovalError) as caught:
        client.remove("single", namespace=ns, force=True, platforms=[Platform("linux", "amd64")])
    assert (caught.value.code, caught.value.reason) == ("INVALID_ARGUMENT", Reason.INVALID_PLATFORM)
    assert store.names(ns) == {lib("single:latest")}


# Idempotent retries


def test_allow_missing_makes_a_retried_removal_succeed(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image_id = store.put(ns, [lib("retry:latest")], small("retry"))
    assert pairs(client.remove("retry", namespace=ns, allow_missing=True)) == [
        untagged("retry:latest"),
        deleted(image_id),
    ]
    assert client.remove("retry", namespace=ns, allow_missing=True) == []
    assert client.remove(image_id, namespace=ns, allow_missing=True) == []
    with pytest.raises(ImageRemovalError):
        client.remove("retry", namespace=ns)


# Found in review: the store as other tools leave it


def test_a_container_keeps_using_the_image_it_was_created_from_after_its_tag_moves(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    old = manifest((busybox,), note="old-build")
    old_id = store.put(ns, [lib("bb:latest")], old)
    ctr.run_detached(ns, lib("bb:latest"), "runner")
    store.create_record(ns, lib("bb:old"), old.blob)
    store.delete_record(ns, lib("bb:latest"))
    new_id = store.put(ns, [lib("bb:latest")], manifest((busybox, file_layer("v2", b"v2")), note="new-build"))
    with pytest.raises(ConflictError) as caught:
        client.remove(old_id, namespace=ns, force=True)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "RUNNING_CONTAINER", "false")
    # The image the name points to now is not the one the container runs: no false conflict.
    assert pairs(client.remove(new_id, namespace=ns, force=True)) == [untagged("bb:latest"), deleted(new_id)]
    assert store.names(ns) == {lib("bb:old")}


def test_names_that_are_not_canonical_count_as_the_same_reference(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    image = small("cri")
    image_id = store.put(ns, [lib("nginx:latest"), lib(f"nginx@{image.blob.digest}"), image.config.digest], image)
    items = pairs(client.remove("nginx", namespace=ns))
    assert items[-1] == deleted(image_id)
    assert store.names(ns) == set()


def test_an_existing_dangling_record_stays_while_children_remain(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    base = small("base-dangling")
    parent = store.put(ns, [lib("base:latest"), f"moby-dangling@{base.blob.digest}"], base)
    store.put(ns, [lib("app:latest")], small("child-of-dangling"), labels={LABEL_PARENT: parent})
    # A record remains, so nothing is reported deleted (Docker would print Deleted: here).
    assert pairs(client.remove("base", namespace=ns)) == [untagged("base:latest")]
    assert store.names(ns) == {f"moby-dangling@{parent}", lib("app:latest")}


def test_a_dangling_record_named_explicitly_needs_force_while_the_image_has_names(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    image = small("explicit-dangling")
    image_id = store.put(ns, [lib("keep:latest"), f"moby-dangling@{image.blob.digest}"], image)
    with pytest.raises(ConflictError) as caught:
        client.remove(f"moby-dangling@{image_id}", namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "MULTIPLE_REFERENCES", "true")
    assert store.names(ns) == {lib("keep:latest"), f"moby-dangling@{image_id}"}


def test_a_short_id_that_is_not_found_reads_like_docker(client: ImageRemovalClient, ns: str) -> None:
    with pytest.raises(ImageRemovalError) as caught:
        client.remove("abcdef12", namespace=ns)
    assert caught.value.message == "No such image: abcdef12:latest"


def test_force_by_name_removes_only_that_name(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="soft-one")
    store.put(ns, [lib("bb:latest"), lib(f"bb@{image.blob.digest}")], image)
    ctr.create(ns, lib("bb:latest"), "stopped")
    assert pairs(client.remove("bb", namespace=ns, force=True)) == [untagged("bb:latest")]
    assert store.names(ns) == {lib(f"bb@{image.blob.digest}")}


def test_a_manifest_that_serves_two_platforms_is_not_removed_for_one(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    amd = manifest((file_layer("x", b"amd64-dup"),), architecture="amd64", note="amd-dup")
    arm7 = manifest((file_layer("x", b"arm-dup"),), architecture="arm", variant="v7", note="arm-dup")
    arm6 = replace(arm7, variant="v6")  # the same manifest, listed again for linux/arm/v6
    idx = index((amd, arm7, arm6))
    store.put(ns, [lib("dup:latest")], idx)
    with pytest.raises(ImageRemovalError) as caught:
        client.remove("dup", namespace=ns, force=True, platforms=[Platform("linux", "arm", "v7")])
    assert (caught.value.code, caught.value.reason) == ("FAILED_PRECONDITION", Reason.PLATFORM_SHARED)
    assert store.intact(ns, arm7.blob.digest)
    items = client.remove(
        "dup", namespace=ns, force=True, platforms=[Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6")]
    )
    assert pairs(items) == [deleted(arm7.blob.digest)]


def test_another_platform_goes_while_a_container_runs_the_host_platform(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    host = manifest((busybox,), note="host-platform")
    other_arch = "arm64" if host.architecture != "arm64" else "amd64"
    other = manifest((file_layer("x", b"other"),), architecture=other_arch, note="other-platform")
    store.put(ns, [lib("mp:latest")], index((host, other)))
    ctr.run_detached(ns, lib("mp:latest"), "runner")
    assert pairs(client.remove("mp", namespace=ns, force=True, platforms=[Platform("linux", other_arch)])) == [
        deleted(other.blob.digest)
    ]
    with pytest.raises(ConflictError) as caught:
        client.remove("mp", namespace=ns, force=True, platforms=[Platform("linux", host.architecture)])
    assert conflict_of(caught.value)[1:] == ("RUNNING_CONTAINER", "false")


def test_odd_containers_labels_and_blobs_do_not_block_removals(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    spec = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}")
    runtime = containers_pb2.Container.Runtime(name="io.containerd.runc.v2")
    containers = containers_pb2_grpc.ContainersStub(store.channel)
    odd = [
        containers_pb2.Container(id="quoted", image='docker.io/library/we"ird:1', runtime=runtime, spec=spec),
        containers_pb2.Container(
            id="devmapper", image=lib("gone:1"), runtime=runtime, spec=spec, snapshotter="devmapper", snapshot_key="k"
        ),
    ]
    for container in odd:
        containers.Create(containers_pb2.CreateContainerRequest(container=container), metadata=store.md(ns))
    try:
        bogus_parent = store.put(ns, [lib("bp:latest")], small("bogus-parent"), labels={LABEL_PARENT: "not a digest"})
        assert pairs(client.remove("bp", namespace=ns))[-1] == deleted(bogus_parent)
        config = Blob(MEDIA_CONFIG, b'{"os": "linux", "rootfs": {"diff_ids": [7]}}')
        body = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config.descriptor(), "layers": ["oops", 3]}
        bad = Blob(MEDIA_MANIFEST, json.dumps(body).encode())
        with store.lease(ns) as lease:
            store.write_blob(ns, config, lease)
            store.write_blob(ns, bad, lease, {"containerd.io/gc.ref.content.config": config.digest})
            store.create_record(ns, lib("bad:latest"), bad)
        assert pairs(client.remove("bad", namespace=ns))[-1] == deleted(bad.digest)
    finally:
        for container in odd:
            containers.Delete(containers_pb2.DeleteContainerRequest(id=container.id), metadata=store.md(ns))
