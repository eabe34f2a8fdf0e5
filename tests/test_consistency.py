"""Consistency under change: compare-and-delete, re-check before the first change, one GC per call."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from imageremoval.client import ImageRemovalClient, ImageRemovalError
from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import ImageChanged, Reason, RemovalError
from imageremoval.server.removal.service import ImageRemover, RemovalRequest
from imageremoval.server.transport.error_status import code_of

from .support.images import file_layer, manifest
from .support.interceptors import BeforeReads, RecordingInterceptor
from .support.remover import remover_on
from .support.store import LABEL_PARENT, Store


@pytest.fixture
async def recorded(containerd: PrivateContainerd) -> AsyncIterator[tuple[ImageRemover, RecordingInterceptor]]:
    interceptor = RecordingInterceptor()
    client = ContainerdClient.connect(containerd.address, interceptors=[interceptor])  # type: ignore[list-item]
    yield remover_on(client), interceptor
    await client.close()


@pytest.fixture
async def hooked(containerd: PrivateContainerd) -> AsyncIterator[tuple[ImageRemover, BeforeReads]]:
    reads = BeforeReads()
    client = ContainerdClient.connect(containerd.address, interceptors=[reads])  # type: ignore[list-item]
    yield remover_on(client), reads
    await client.close()


def small(note: str):  # type: ignore[no-untyped-def]
    return manifest((file_layer("f", note.encode()),), note=note)


async def test_only_the_last_delete_waits_for_garbage_collection(
    recorded: tuple[ImageRemover, RecordingInterceptor], store: Store, ns: str
) -> None:
    remover, interceptor = recorded
    image = small("gc-once")
    image_id = store.put(ns, ["docker.io/library/a:1", "docker.io/library/a:2", "docker.io/library/b:1"], image)
    await remover.remove(RemovalRequest(image_id, ns, force=True))
    # The records go while a lease of ours holds the content; releasing it is the one collection waited for.
    assert [d.sync for d in interceptor.deletes()] == [False, False, False]
    assert [r.sync for r in interceptor.lease_deletes()] == [True]
    assert not any(store.has(ns, blob.digest) for blob in image.blobs), "collected before the call returned"


async def test_async_gc_waits_for_no_collection(
    recorded: tuple[ImageRemover, RecordingInterceptor], store: Store, ns: str
) -> None:
    remover, interceptor = recorded
    store.put(ns, ["docker.io/library/a:1", "docker.io/library/a:2"], small("async"))
    await remover.remove(RemovalRequest("a:1", ns, async_gc=True))
    await remover.remove(RemovalRequest("a:2", ns, async_gc=True))
    assert [d.sync for d in interceptor.deletes()] == [False, False]


async def test_pruned_parents_share_the_one_collection(
    recorded: tuple[ImageRemover, RecordingInterceptor], store: Store, ns: str
) -> None:
    remover, interceptor = recorded
    parent = store.put(ns, [f"moby-dangling@{small('p').blob.digest}"], small("p"))
    store.put(ns, ["docker.io/library/app:latest"], small("c"), labels={LABEL_PARENT: parent})
    await remover.remove(RemovalRequest("app", ns))
    assert [d.sync for d in interceptor.deletes()] == [False, True]


async def test_every_delete_carries_the_expected_target(
    recorded: tuple[ImageRemover, RecordingInterceptor], store: Store, ns: str
) -> None:
    remover, interceptor = recorded
    image_id = store.put(ns, ["docker.io/library/a:1", "docker.io/library/a:2"], small("cad"))
    await remover.remove(RemovalRequest("a:1", ns))
    await remover.remove(RemovalRequest("a:2", ns))
    deletes = interceptor.deletes()
    assert [d.name for d in deletes] == ["docker.io/library/a:1", "docker.io/library/a:2"]
    assert all(d.HasField("target") and d.target.digest == image_id for d in deletes)


async def test_a_tag_moved_before_the_first_change_aborts_with_nothing_removed(
    hooked: tuple[ImageRemover, BeforeReads], store: Store, ns: str
) -> None:
    remover, client = hooked
    image = small("moved")
    store.put(ns, ["docker.io/library/a:latest"], image)
    elsewhere = small("elsewhere")
    store.put(ns, ["docker.io/library/keep:latest"], elsewhere)

    def retag() -> None:
        client.hook = None
        store.delete_record(ns, "docker.io/library/a:latest")
        store.create_record(ns, "docker.io/library/a:latest", elsewhere.blob)

    client.hook = retag
    with pytest.raises(ImageChanged):
        await remover.remove(RemovalRequest("a", ns))
    assert store.target(ns, "docker.io/library/a:latest") == elsewhere.blob.digest


async def test_a_new_name_added_before_the_first_change_aborts(
    hooked: tuple[ImageRemover, BeforeReads], store: Store, ns: str
) -> None:
    remover, client = hooked
    image = small("added")
    store.put(ns, ["docker.io/library/a:latest"], image)

    def tag() -> None:
        client.hook = None
        store.create_record(ns, "docker.io/library/b:latest", image.blob)

    client.hook = tag
    with pytest.raises(ImageChanged) as caught:
        await remover.remove(RemovalRequest("a", ns))
    assert caught.value.metadata["reference"] == "b:latest"
    assert store.names(ns) == {"docker.io/library/a:latest", "docker.io/library/b:latest"}
    assert store.all_present(ns, image)


@pytest.mark.parametrize("async_gc", [False, True])
def test_a_concurrent_retag_never_loses_an_image(
    client: ImageRemovalClient, store: Store, ns: str, async_gc: bool
) -> None:
    """A retag racing the removal: ABORTED, or removed with the copy whole; never a copy with lost content."""
    for round_ in range(8):
        image = small(f"race-{round_}")
        store.put(ns, ["docker.io/library/race:latest"], image)
        results: list[str] = []

        def remove(results: list[str] = results) -> None:
            try:
                client.remove("race", namespace=ns, async_gc=async_gc)
                results.append("removed")
            except ImageRemovalError as error:
                results.append(error.reason)

        remover = threading.Thread(target=remove)
        remover.start()
        copied = store.tag(ns, "docker.io/library/race:latest", f"docker.io/library/copy{round_}:latest")
        remover.join(30)
        assert results and results[0] in {"removed", Reason.IMAGE_CHANGED}
        if copied:
            assert store.all_present(ns, image), "a retagged image keeps all its content"
        if "docker.io/library/race:latest" in store.names(ns):
            assert results[0] == Reason.IMAGE_CHANGED and store.all_present(ns, image)
            store.delete_record(ns, "docker.io/library/race:latest")


class FailDeletes(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """containerd goes away for deletes of chosen records, as if it crashed mid-removal."""

    def __init__(self, failing: Callable[[str], bool]) -> None:
        self.failing = failing

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        if method.endswith(".Images/Delete") and self.failing(request.name):
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="injected",
                debug_error_string="injected",
            )
        return await continuation(details, request)


def _remover_with(containerd: PrivateContainerd, interceptor: Any) -> tuple[ImageRemover, ContainerdClient]:
    client = ContainerdClient.connect(containerd.address, interceptors=[interceptor])
    return remover_on(client), client


async def test_a_failure_after_the_first_change_says_what_changed_and_is_not_retried_blindly(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    remover, client = _remover_with(containerd, FailDeletes(lambda name: name.endswith("b:1")))
    image_id = store.put(ns, ["docker.io/library/a:1", "docker.io/library/b:1"], small("half"))
    try:
        with store.record_events(ns) as events:
            with pytest.raises(RemovalError) as caught:
                await remover.remove(RemovalRequest(image_id, ns, force=True))
            await remover.drain(5)
    finally:
        await client.close()
    assert events.ours() == [("/imageremoval/untag", "a:1")], "the change that happened has its event"
    error = caught.value
    assert (code_of(error.reason).name, error.reason.value) == ("ABORTED", Reason.REMOVAL_INCOMPLETE)
    assert error.metadata["cause"] == Reason.CONTAINERD_UNAVAILABLE
    assert error.metadata["untagged"] == "a:1"
    assert store.names(ns) == {"docker.io/library/b:1"}


async def test_a_parent_that_cannot_go_stops_pruning_quietly(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    remover, client = _remover_with(containerd, FailDeletes(lambda name: name.startswith("moby-dangling@")))
    parent = store.put(ns, [f"moby-dangling@{small('stuck-parent').blob.digest}"], small("stuck-parent"))
    child = store.put(ns, ["docker.io/library/app:latest"], small("child"), labels={LABEL_PARENT: parent})
    try:
        items = await remover.remove(RemovalRequest("app", ns))
    finally:
        await client.close()
    assert [(i.kind.value, i.value) for i in items] == [("untagged", "app:latest"), ("deleted", child)]
    assert store.names(ns) == {f"moby-dangling@{parent}"}
