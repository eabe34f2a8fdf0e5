"""Docker's conflict rules as RemoveImage applies them (validate_only) over the fake store: who uses an image."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from imageremoval.server.domain.content import chain_id
from imageremoval.server.domain.errors import Conflict, ImageConflict
from imageremoval.server.domain.model import Item, ItemKind, SnapshotKind, TaskState
from imageremoval.server.removal.request import RemovalRequest
from imageremoval.server.removal.service import ImageRemover

from .support.fake_store import FakeStore, FakeStores, KeptEvents

APP = "docker.io/library/app:latest"
LAYER = "sha256:" + "1" * 64
OTHER_LAYER = "sha256:" + "2" * 64
DOCKER_ID = "d" * 64


async def _verdict(store: FakeStore, typed: str, *, force: bool) -> list[Item]:
    """What RemoveImage answers for `typed` (validate_only: every check, no change), by the server's own code."""
    remover = ImageRemover(FakeStores(store), TracerProvider().get_tracer("test"), events=KeptEvents())
    return await remover.remove(RemovalRequest(typed, store.namespace, force=force, validate_only=True))


def _deleted(items: list[Item], image_id: str) -> bool:
    return Item(ItemKind.DELETED, image_id, image_id) in items


def _image(store: FakeStore, *names: str, layer: str = LAYER) -> str:
    target = store.put_manifest([layer], note=names[0] if names else layer)
    for name in names:
        store.tag(name, target)
    store.snapshot(chain_id([layer]), "", SnapshotKind.COMMITTED)
    return target.digest


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
    assert _deleted(await _verdict(store, image_id, force=True), image_id)


async def test_force_on_the_last_name_of_an_image_in_use_untags_it_softly() -> None:
    store = FakeStore()
    image_id = _image(store, APP)
    store.snapshot("box", chain_id([LAYER]), SnapshotKind.ACTIVE)
    store.container("box", APP, None, snapshot_key="box")
    assert await _verdict(store, "app", force=True) == [Item(ItemKind.UNTAGGED, "app:latest", image_id)]


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
    assert _deleted(await _verdict(store, image_id, force=False), image_id)


async def test_several_repositories_by_id_need_force() -> None:
    store = FakeStore()
    image_id = _image(store, APP, "docker.io/library/copy:latest")
    with pytest.raises(ImageConflict) as caught:
        await _verdict(store, image_id, force=False)
    assert caught.value.metadata["conflict"] == Conflict.MULTIPLE_REFERENCES
    assert _deleted(await _verdict(store, image_id, force=True), image_id)
