"""Docker's conflict rules through the port: the users the lineage rule finds, and what check_conflicts says."""

from __future__ import annotations

import pytest

from imageremoval.server.domain.conflicts import check_conflicts
from imageremoval.server.domain.container_users import ContainerUsers
from imageremoval.server.domain.content import chain_id
from imageremoval.server.domain.docker_rules import DeleteImage, decide
from imageremoval.server.domain.errors import Conflict, ImageConflict
from imageremoval.server.domain.model import ImageRecord, SnapshotKind, TaskState
from imageremoval.server.domain.references import IdReference, parse_reference
from imageremoval.server.domain.store import ImageStore
from imageremoval.server.removal.content_walk import walk_present
from imageremoval.server.removal.resolve import resolve

from .support.fake_store import FakeStore

APP = "docker.io/library/app:latest"
LAYER = "sha256:" + "1" * 64
OTHER_LAYER = "sha256:" + "2" * 64
DOCKER_ID = "d" * 64


async def _verdict(store: ImageStore, typed: str, *, force: bool) -> ImageRecord | None:
    """What RemoveImage's check-conflicts phase decides for `typed`, from the store's state alone."""
    reference = parse_reference(typed)
    resolution = await resolve(store, reference)
    decision = decide(resolution, force=force, by_id=isinstance(reference, IdReference) and resolution.named is None)
    assert isinstance(decision, DeleteImage)
    content = await walk_present(store, resolution.all[0].target)
    users = await ContainerUsers.load(store)
    using = await users.users(resolution.image_id, {r.name for r in resolution.all}, content)
    return check_conflicts(resolution, decision, using, force=force)


def _image(store: FakeStore, *names: str, layer: str = LAYER) -> str:
    target = store.put_manifest([layer], note=names[0] if names else layer)
    for name in names:
        store.tag(name, target)
    store.snapshot(chain_id([layer]), "", SnapshotKind.COMMITTED)
    return target.digest


def test_the_fake_implements_the_port() -> None:
    store: ImageStore = FakeStore()  # mypy checks the Protocol; the tests below rely on it
    assert store.unbounded() is store


async def test_a_running_container_refuses_the_removal_even_with_force() -> None:
    store = FakeStore()
    image_id = _image(store, APP)
    store.snapshot("box", chain_id([LAYER]), SnapshotKind.ACTIVE)
    store.container("box", APP, TaskState.RUNNING, snapshot_key="box")
    with pytest.raises(ImageConflict) as caught:
        await _verdict(store, image_id, force=True)
    assert caught.value.metadata["conflict"] == Conflict.RUNNING_CONTAINER
    assert caught.value.metadata["forceable"] == "false"


async def test_a_stopped_container_refuses_without_force_and_not_with_it() -> None:
    store = FakeStore()
    image_id = _image(store, APP)
    store.snapshot("box", chain_id([LAYER]), SnapshotKind.ACTIVE)
    store.container("box", APP, None, snapshot_key="box")  # no task: stopped
    with pytest.raises(ImageConflict) as caught:
        await _verdict(store, image_id, force=False)
    assert caught.value.metadata["conflict"] == Conflict.STOPPED_CONTAINER
    assert await _verdict(store, image_id, force=True) is None


async def test_force_on_the_last_name_of_an_image_in_use_untags_it_softly() -> None:
    store = FakeStore()
    _image(store, APP)
    store.snapshot("box", chain_id([LAYER]), SnapshotKind.ACTIVE)
    store.container("box", APP, None, snapshot_key="box")
    kept = await _verdict(store, "app", force=True)
    assert kept is not None and kept.name == APP


async def test_a_dockerd_container_without_a_record_is_found_by_its_snapshots() -> None:
    store = FakeStore()
    image_id = _image(store, APP)
    store.snapshot(f"{DOCKER_ID}-init", chain_id([LAYER]), SnapshotKind.COMMITTED)
    store.snapshot(DOCKER_ID, f"{DOCKER_ID}-init", SnapshotKind.ACTIVE)
    with pytest.raises(ImageConflict) as caught:
        await _verdict(store, image_id, force=False)
    assert caught.value.metadata["container"] == DOCKER_ID


async def test_a_container_on_another_images_layer_does_not_use_this_one() -> None:
    store = FakeStore()
    image_id = _image(store, APP)
    _image(store, "docker.io/library/other:latest", layer=OTHER_LAYER)
    # Built on both layers: the committed snapshot above this image's layer is another image's layer.
    stacked = chain_id([LAYER, OTHER_LAYER])
    store.snapshot(stacked, chain_id([LAYER]), SnapshotKind.COMMITTED)
    store.snapshot("box", stacked, SnapshotKind.ACTIVE)
    store.container("box", "docker.io/library/stacked:latest", TaskState.RUNNING, snapshot_key="box")
    assert await _verdict(store, image_id, force=False) is None


async def test_several_repositories_by_id_need_force() -> None:
    store = FakeStore()
    image_id = _image(store, APP, "docker.io/library/copy:latest")
    with pytest.raises(ImageConflict) as caught:
        await _verdict(store, image_id, force=False)
    assert caught.value.metadata["conflict"] == Conflict.MULTIPLE_REFERENCES
    assert await _verdict(store, image_id, force=True) is None
