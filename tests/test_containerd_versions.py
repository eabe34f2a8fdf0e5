"""What differs between containerd 1.6 and 2.x for a removal: the delete's expected-target check.

containerd 2.x refuses `Images.Delete` whose target no longer matches the record (NotFound, record kept);
1.6 ignores the target and deletes. On 1.6 only our re-read right before the first change narrows the window.
Each test names the version it is about and is skipped on the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from imageremoval.gen.containerd.services.images.v1 import images_pb2
from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import ImageChanged, NotFoundInContainerd
from imageremoval.server.domain.model import Descriptor, ImageRecord
from imageremoval.server.removal.service import ImageRemover, RemovalRequest

from .support.images import file_layer, manifest
from .support.remover import remover_on
from .support.store import Store

NAME = "docker.io/library/moving:latest"


def _major(containerd: PrivateContainerd) -> int:
    assert containerd.version is not None
    return containerd.version.major


@pytest.fixture
def on_2(containerd: PrivateContainerd) -> None:
    if _major(containerd) < 2:
        pytest.skip("containerd 2.x behaviour; this run uses 1.x")


@pytest.fixture
def on_1_6(containerd: PrivateContainerd) -> None:
    if _major(containerd) >= 2:
        pytest.skip("containerd 1.6 behaviour; this run uses 2.x")


class BeforeDelete(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Runs an action once, right before the first Images.Delete of a name reaches containerd (after our re-read)."""

    def __init__(self) -> None:
        self.action: Callable[[str], None] | None = None

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        if method.endswith(".Images/Delete") and self.action is not None:
            action, self.action = self.action, None
            action(request.name)
        return await continuation(details, request)


@pytest.fixture
async def remover(containerd: PrivateContainerd) -> AsyncIterator[tuple[ImageRemover, BeforeDelete]]:
    hook = BeforeDelete()
    client = ContainerdClient.connect(containerd.address, interceptors=[hook])  # type: ignore[list-item]
    yield remover_on(client), hook
    await client.close()


def _two_images(store: Store, ns: str) -> tuple[str, Any]:
    image_id = store.put(ns, [NAME], manifest((file_layer("m", b"moving"),), note="moving"))
    other = manifest((file_layer("o", b"other"),), note="other")
    store.put(ns, ["docker.io/library/other:latest"], other)
    return image_id, other


def _repoint(store: Store, ns: str, target: Any) -> Callable[[str], None]:
    def repoint(name: str) -> None:
        store.delete_record(ns, name)
        store.create_record(ns, name, target.blob)

    return repoint


async def test_a_delete_with_a_stale_target_is_refused_by_containerd_2(
    on_2: None, containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    _, other = _two_images(store, ns)
    stale = ImageRecord(NAME, Descriptor(other.blob.media_type, other.blob.digest, other.blob.size))
    client = ContainerdClient.connect(containerd.address)
    try:
        with pytest.raises(NotFoundInContainerd):
            await client.scope(ns).delete_image(stale, sync=True)
    finally:
        await client.close()
    assert store.target(ns, NAME) is not None, "the record is kept"


async def test_a_delete_with_a_stale_target_is_obeyed_by_containerd_1_6(
    on_1_6: None, containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    _, other = _two_images(store, ns)
    stale = ImageRecord(NAME, Descriptor(other.blob.media_type, other.blob.digest, other.blob.size))
    client = ContainerdClient.connect(containerd.address)
    try:
        await client.scope(ns).delete_image(stale, sync=True)
    finally:
        await client.close()
    assert store.target(ns, NAME) is None, "1.6 ignores the expected target"


@pytest.mark.parametrize("allow_missing", [False, True])
async def test_a_tag_repointed_after_the_recheck_is_kept_and_the_call_aborts_on_containerd_2(
    on_2: None, remover: tuple[ImageRemover, BeforeDelete], store: Store, ns: str, allow_missing: bool
) -> None:
    """2.x refuses the stale delete; the removal must not call the re-pointed name gone (allow_missing or not),
    nor report the image deleted."""
    image_remover, hook = remover
    _, other = _two_images(store, ns)
    hook.action = _repoint(store, ns, other)
    with pytest.raises(ImageChanged):
        await image_remover.remove(RemovalRequest("moving", ns, allow_missing=allow_missing))
    assert store.target(ns, NAME) == other.blob.digest
    assert store.all_present(ns, other)


async def test_a_tag_repointed_after_the_recheck_is_deleted_by_containerd_1_6(
    on_1_6: None, remover: tuple[ImageRemover, BeforeDelete], store: Store, ns: str
) -> None:
    """The window 1.6 leaves open (README): the re-pointed name goes, the image it points to keeps its content."""
    image_remover, hook = remover
    image_id, other = _two_images(store, ns)
    hook.action = _repoint(store, ns, other)
    items = await image_remover.remove(RemovalRequest("moving", ns))
    assert [i.value for i in items][-1] == image_id
    assert store.target(ns, NAME) is None
    assert store.all_present(ns, other)


async def test_allow_missing_on_a_name_already_gone_still_waits_for_collection(
    remover: tuple[ImageRemover, BeforeDelete], store: Store, ns: str
) -> None:
    """Any version: a concurrent remover deleted the record first; the answer is the missing name's, and the
    image's blobs are collected before the call returns (the synchronous delete's wait is not skipped)."""
    image_remover, hook = remover
    image = manifest((file_layer("g", b"gone"),), note="gone")
    store.put(ns, [NAME], image)
    hook.action = lambda name: store.images.Delete(images_pb2.DeleteImageRequest(name=name), metadata=store.md(ns))
    await image_remover.remove(RemovalRequest("moving", ns, allow_missing=True))
    assert store.names(ns) == set()
    assert not any(store.has(ns, blob.digest) for blob in image.blobs)
