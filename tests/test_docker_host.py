"""Exact on Docker hosts (issue 10): each scenario where a real dockerd answered differently, by its state.

dockerd's state is laid out through containerd's API as moby leaves it (tests/support/dockerd.py): created
and stopped containers have no container record, only a lease and snapshots named by the container ID on
the image's chain; running ones add a record with an empty snapshot key and a real runc task.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from imageremoval.client import ConflictError, ImageRemovalClient, ImageRemovalError, Platform
from imageremoval.gen.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from imageremoval.server.domain.errors import Reason

from .support.ctr import Ctr
from .support.dockerd import DockerHost, docker_host
from .support.images import Layer, Manifest, file_layer, index, manifest
from .support.items import deleted, pairs, untagged
from .support.store import LABEL_PARENT, Store


def lib(name: str) -> str:
    return f"docker.io/library/{name}"


def container_id(name: str) -> str:
    """A 64-hex container ID, as dockerd makes them."""
    return hashlib.sha256(name.encode()).hexdigest()


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def conflict_of(error: ImageRemovalError) -> tuple[str, str, str]:
    return error.reason, error.metadata.get("conflict", ""), error.metadata.get("forceable", "")


@pytest.fixture
def docker(store: Store, ctr: Ctr, ns: str, tmp_path: Path) -> Iterator[DockerHost]:
    with docker_host(store, ctr, ns, tmp_path) as host:
        yield host


def _run(docker: DockerHost, name: str, image: Manifest, image_name: str) -> str:
    """`docker run -d`: unpack, create, start."""
    docker.unpack(image_name)
    cid = docker.create(container_id(name), image)
    docker.start(cid, image_name)
    return cid


# 1. An image a running Docker container uses, after its name is removed or re-pointed


def test_running_docker_container_keeps_its_image_after_its_name_is_removed(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="docker-run-v2")
    image_id = store.put(ns, [lib("bb:v2")], image)
    cid = _run(docker, "runner", image, lib("bb:v2"))
    assert pairs(client.remove("bb:v2", namespace=ns, force=True)) == [untagged("bb:v2")]
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns, force=True)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "RUNNING_CONTAINER", "false")
    assert caught.value.message == (
        f"conflict: unable to delete {short(image_id)} (cannot be forced) - "
        f"image is being used by running container {short(cid)}"
    )
    assert store.names(ns) == {f"moby-dangling@{image_id}"}
    assert store.all_present(ns, image)


def test_running_docker_container_keeps_its_image_after_its_name_is_repointed(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="docker-run-repointed")
    image_id = store.put(ns, [lib("bb:latest")], image)
    _run(docker, "runner", image, lib("bb:latest"))
    other = manifest((file_layer("o", b"other"),), note="other")
    other_id = store.put(ns, [lib("other:latest")], other)
    # `docker tag other bb`: the old image keeps a dangling record, the name points at other.
    store.create_record(ns, f"moby-dangling@{image_id}", image.blob)
    store.delete_record(ns, lib("bb:latest"))
    store.tag(ns, lib("other:latest"), lib("bb:latest"))
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns, force=True)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "RUNNING_CONTAINER", "false")
    # The name no longer says anything about the container: other is only referenced twice.
    with pytest.raises(ConflictError) as caught:
        client.remove(other_id, namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "MULTIPLE_REFERENCES", "true")
    assert caught.value.message == (
        f"conflict: unable to delete {short(other_id)} (must be forced) - image is referenced in multiple repositories"
    )
    assert pairs(client.remove(other_id, namespace=ns, force=True)) == [
        untagged("bb:latest"),
        untagged("other:latest"),
        deleted(other_id),
    ]
    assert store.names(ns) == {f"moby-dangling@{image_id}"}


# 2. Stopped and created Docker containers: no container record, only a lease and snapshots


def test_created_docker_container_by_name_must_be_forced(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="docker-create")
    image_id = store.put(ns, [lib("bb:latest")], image)
    docker.unpack(lib("bb:latest"))
    cid = docker.create(container_id("created"), image)
    with pytest.raises(ConflictError) as caught:
        client.remove("bb", namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "STOPPED_CONTAINER", "true")
    assert caught.value.message == (
        f"conflict: unable to delete bb:latest (must be forced) - container {short(cid)} is using its referenced "
        f"image {short(image_id)}"
    )
    assert store.names(ns) == {lib("bb:latest")}


def test_stopped_docker_container_by_id_must_be_forced(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="docker-stopped")
    image_id = store.put(ns, [lib("bb:latest")], image)
    cid = _run(docker, "exited", image, lib("bb:latest"))
    docker.stop(cid)
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "STOPPED_CONTAINER", "true")
    assert caught.value.message == (
        f"conflict: unable to delete {short(image_id)} (must be forced) - "
        f"image is being used by stopped container {short(cid)}"
    )
    assert store.names(ns) == {lib("bb:latest")} and store.all_present(ns, image)


def test_force_by_name_with_a_stopped_docker_container_only_untags(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="docker-stopped-forced")
    image_id = store.put(ns, [lib("bb:latest")], image)
    docker.unpack(lib("bb:latest"))
    docker.create(container_id("created"), image)
    assert pairs(client.remove("bb", namespace=ns, force=True)) == [untagged("bb:latest")]
    assert store.names(ns) == {f"moby-dangling@{image_id}"}
    assert store.all_present(ns, image)


def test_image_of_a_removed_docker_container_is_deleted(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="docker-rm")
    image_id = store.put(ns, [lib("bb:latest")], image)
    cid = _run(docker, "gone", image, lib("bb:latest"))
    docker.remove(cid)
    assert pairs(client.remove(image_id, namespace=ns)) == [untagged("bb:latest"), deleted(image_id)]
    assert store.names(ns) == set()


def test_docker_container_of_a_child_image_does_not_hold_the_parent(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    base = manifest((busybox,), note="docker-base")
    base_id = store.put(ns, [lib("base:latest")], base)
    child = manifest((busybox, file_layer("app", b"app")), note="docker-child")
    store.put(ns, [lib("app:latest")], child, labels={LABEL_PARENT: base_id})
    docker.unpack(lib("app:latest"))
    docker.create(container_id("child-user"), child)
    # Docker checks the container's own image only; the parent's layers stay with the child.
    assert pairs(client.remove(base_id, namespace=ns)) == [untagged("base:latest"), deleted(base_id)]
    with pytest.raises(ConflictError):
        client.remove("app", namespace=ns)
    assert store.all_present(ns, child)


def test_image_mounted_into_a_docker_container_is_in_use(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="docker-run")
    store.put(ns, [lib("bb:latest")], image)
    data = manifest((file_layer("d", b"data"),), note="mounted")
    data_id = store.put(ns, [lib("data:latest")], data)
    docker.unpack(lib("bb:latest"))
    docker.unpack(lib("data:latest"))
    cid = docker.create(container_id("mounter"), image)
    docker.mount_image(cid, data, "data:latest")
    with pytest.raises(ConflictError) as caught:
        client.remove(data_id, namespace=ns)
    assert conflict_of(caught.value) == (Reason.IMAGE_CONFLICT, "STOPPED_CONTAINER", "true")
    assert caught.value.metadata["container"] == cid


def test_a_container_record_whose_root_filesystem_is_no_snapshot_is_matched_by_its_image_name(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    image_id = store.put(ns, [lib("bb:latest")], manifest((file_layer("r", b"rootfs"),), note="own-rootfs"))
    containers = containers_pb2_grpc.ContainersStub(store.channel)
    record = containers_pb2.Container(
        id="own-rootfs",
        image=lib("bb:latest"),
        runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
        spec=any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}"),
    )
    containers.Create(containers_pb2.CreateContainerRequest(container=record), metadata=store.md(ns))
    with pytest.raises(ConflictError) as caught:
        client.remove(image_id, namespace=ns)
    assert conflict_of(caught.value)[1] == "STOPPED_CONTAINER"
    assert caught.value.metadata["container"] == "own-rootfs"


# 3. A parent with children


def test_parent_with_children_removed_by_id_is_deleted_like_docker(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    base = manifest((file_layer("b", b"base"),), note="parent-by-id")
    base_id = store.put(ns, [lib("bb:latest")], base)
    child = manifest((file_layer("b", b"base"), file_layer("c", b"child")), note="child-by-id")
    store.put(ns, [lib("app:latest")], child, labels={LABEL_PARENT: base_id})
    assert pairs(client.remove(base_id, namespace=ns)) == [untagged("bb:latest"), deleted(base_id)]
    assert store.names(ns) == {lib("app:latest")}
    assert store.all_present(ns, child)


def test_parent_with_children_and_a_dangling_record_removed_by_id_goes_entirely(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    base = manifest((file_layer("b", b"base"),), note="parent-dangling-by-id")
    base_id = store.put(ns, [lib("bb:latest"), f"moby-dangling@{base.blob.digest}"], base)
    store.put(ns, [lib("app:latest")], manifest((file_layer("c", b"d"),), note="d"), labels={LABEL_PARENT: base_id})
    assert pairs(client.remove(base_id[7:19], namespace=ns)) == [untagged("bb:latest"), deleted(base_id)]
    assert store.names(ns) == {lib("app:latest")}


def test_parent_with_children_removed_by_name_stays_dangling_and_is_not_reported_deleted(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    base = manifest((file_layer("b", b"base"),), note="parent-by-name")
    base_id = store.put(ns, [lib("bb:latest")], base)
    store.put(ns, [lib("app:latest")], manifest((file_layer("c", b"c"),), note="c"), labels={LABEL_PARENT: base_id})
    with store.record_events(ns, expect=1) as events:
        assert pairs(client.remove("bb", namespace=ns)) == [untagged("bb:latest")]
    assert store.names(ns) == {f"moby-dangling@{base_id}", lib("app:latest")}
    assert events.ours() == [("/imageremoval/untag", "bb:latest")]


# 5. A repository named like another image's short ID


def test_a_repository_named_like_another_images_short_id_is_ambiguous(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    bb_id = store.put(ns, [lib("bb:latest")], manifest((file_layer("b", b"bb"),), note="bb"))
    store.put(ns, [lib("other:latest")], manifest((file_layer("o", b"o"),), note="other-lookalike"))
    store.tag(ns, lib("other:latest"), lib(f"{short(bb_id)}:latest"))
    with pytest.raises(ImageRemovalError) as caught:
        client.remove(short(bb_id), namespace=ns)
    assert (caught.value.code, caught.value.reason) == ("INVALID_ARGUMENT", Reason.AMBIGUOUS_REFERENCE)
    assert caught.value.message.startswith("ambiguous reference")
    assert store.names(ns) == {lib("bb:latest"), lib("other:latest"), lib(f"{short(bb_id)}:latest")}


def test_a_repository_named_like_an_id_that_no_image_has_is_that_name(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    store.put(ns, [lib("other:latest"), lib("abcdef123456:latest")], manifest((file_layer("o", b"a"),), note="alone"))
    assert pairs(client.remove("abcdef123456", namespace=ns)) == [untagged("abcdef123456:latest")]
    assert store.names(ns) == {lib("other:latest")}


# 6. Removing one platform while a Docker container runs another


def test_removing_a_platform_while_a_docker_container_runs_another(
    client: ImageRemovalClient, store: Store, docker: DockerHost, ns: str, busybox: Layer
) -> None:
    host = manifest((busybox,), note="docker-host-platform")
    other_arch = "386" if host.architecture != "386" else "arm64"
    other = manifest((file_layer("x", b"386"),), architecture=other_arch, note="docker-other-platform")
    store.put(ns, [lib("mp:latest")], index((host, other)))
    _run(docker, "runner", host, lib("mp:latest"))
    assert pairs(client.remove("mp", namespace=ns, force=True, platforms=[Platform("linux", other_arch)])) == [
        deleted(other.blob.digest)
    ]
    with pytest.raises(ConflictError) as caught:
        client.remove("mp", namespace=ns, force=True, platforms=[Platform("linux", host.architecture)])
    assert conflict_of(caught.value)[1:] == ("RUNNING_CONTAINER", "false")
    assert all(store.intact(ns, b.digest) for b in host.blobs)


# Cosmetic: Docker's wording where the situation is the same


def test_an_absent_platform_is_worded_as_docker_words_it(client: ImageRemovalClient, store: Store, ns: str) -> None:
    amd = manifest((file_layer("x", b"amd-w"),), architecture="amd64", note="amd-w")
    arm = manifest((file_layer("x", b"arm-w"),), architecture="arm64", variant="v8", note="arm-w")
    image_id = store.put(ns, [lib("multi:latest")], index((amd, arm)))
    with pytest.raises(ImageRemovalError) as caught:
        client.remove("multi", namespace=ns, force=True, platforms=[Platform("linux", "s390x")])
    assert (caught.value.code, caught.value.reason) == ("NOT_FOUND", Reason.PLATFORM_NOT_FOUND)
    assert caught.value.message == (
        f"failed to delete platform linux/s390x for image {image_id}: image with reference multi:latest was found "
        "but does not provide the specified platform (linux/s390x)"
    )
