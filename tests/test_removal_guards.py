"""Guards the README promises that once survived a one-line mutation, each held by a test of its own.

Each test waits on containerd calls it holds or hooks (tests/support/gates.py), never on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from imageremoval.client import ImageRemovalClient
from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import ImageChanged
from imageremoval.server.domain.platforms import PlatformSpec
from imageremoval.server.removal.service import ImageRemover, RemovalRequest
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.metrics import RemovalMetrics

from .support.gates import Before, Gate
from .support.images import file_layer, index, manifest
from .support.items import pairs, untagged
from .support.remover import estimator_on, remover_on
from .support.store import LABEL_PARENT, Store

NAME = "docker.io/library/guarded:latest"


@contextlib.asynccontextmanager
async def _remover(containerd: PrivateContainerd, hook: object, **options: object) -> AsyncIterator[ImageRemover]:
    client = ContainerdClient.connect(containerd.address, interceptors=[hook])  # type: ignore[list-item]
    try:
        yield remover_on(client, **options)
    finally:
        await client.close()


def _small(note: str):  # type: ignore[no-untyped-def]
    return manifest((file_layer("f", note.encode()),), note=note)


async def test_a_platform_removal_re_reads_the_records_and_refuses_when_a_name_moved(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    amd = manifest((file_layer("x", b"amd64 guarded"),), architecture="amd64", note="amd")
    arm = manifest((file_layer("x", b"arm64 guarded"),), architecture="arm64", variant="v8", note="arm")
    multi = index((amd, arm))
    store.put(ns, [NAME, "docker.io/library/guarded:other"], multi)  # the other name keeps the index alive
    elsewhere = _small("elsewhere")
    store.put(ns, ["docker.io/library/elsewhere:latest"], elsewhere)

    def repoint() -> None:  # after the conflict check read the configs, before the first change
        store.delete_record(ns, NAME)
        store.create_record(ns, NAME, elsewhere.blob)

    hook = Before("/containerd.services.content.v1.Content/Info", repoint)
    async with _remover(containerd, hook) as remover:
        with pytest.raises(ImageChanged):
            await remover.remove(RemovalRequest(NAME, ns, force=True, platforms=(PlatformSpec("linux", "arm64"),)))
    assert hook.action is None, "the name moved while the removal ran"
    assert store.all_present(ns, multi), "both platforms are still there"


async def _cancelled_during_resolve(
    containerd: PrivateContainerd, store: Store, ns: str, *, wrapped: bool = False, **options: object
) -> tuple[str, ImageRemover]:
    """A removal whose caller goes away while the reference is being resolved (nothing changed yet); `wrapped`:
    called through the ReclaimEstimator, as the server calls it, whose own pre-read resolves first."""
    image_id = store.put(ns, [NAME], _small("cancelled"))
    gate = Gate("/containerd.services.images.v1.Images/List")
    client = ContainerdClient.connect(containerd.address, interceptors=[gate])  # type: ignore[list-item]
    try:
        remover = remover_on(client, **options)
        request = RemovalRequest(NAME, ns)
        removal = estimator_on(client, remover).remove(request) if wrapped else remover.remove(request)
        call: asyncio.Task[object] = asyncio.create_task(removal)
        await gate.entered.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        gate.opened.set()
        await remover.drain(30)  # the removal's own task has ended: stopped, or finished
    finally:
        await client.close()
    return image_id, remover


@pytest.mark.parametrize("wrapped", [False, True], ids=["remover", "as-the-server-calls-it"])
async def test_a_caller_that_cancels_before_any_change_stops_the_removal_at_the_next_phase(
    containerd: PrivateContainerd, store: Store, ns: str, wrapped: bool
) -> None:
    image_id, _ = await _cancelled_during_resolve(containerd, store, ns, wrapped=wrapped)
    assert store.target(ns, NAME) == image_id, "nothing was removed"


async def test_a_cancelled_removal_is_counted_as_cancelled(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    reader = InMemoryMetricReader()
    metrics = RemovalMetrics(MeterProvider(metric_readers=[reader]))
    await _cancelled_during_resolve(containerd, store, ns, metrics=metrics)
    data = reader.get_metrics_data()
    assert data is not None
    outcomes = [
        ((point.attributes or {}).get(t.ATTR_METRIC_OUTCOME), getattr(point, "value", None))
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == t.METRIC_REMOVALS
        for point in metric.data.data_points
    ]
    assert outcomes == [(t.OUTCOME_CANCELLED, 1)]


async def test_drain_waits_for_a_removal_whose_caller_went_away_mid_change(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    image = _small("drained")
    store.put(ns, [NAME], image)
    gate = Gate("/containerd.services.images.v1.Images/Delete")
    async with _remover(containerd, gate) as remover:
        call = asyncio.create_task(remover.remove(RemovalRequest(NAME, ns)))
        await gate.entered.wait()  # committed: the delete is on its way
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        draining = asyncio.create_task(remover.drain(30))  # what App.stop does on shutdown
        gate.opened.set()
        await draining
        assert store.names(ns) == set(), "the removal finished before the drain returned"
    assert not store.has(ns, image.blob.digest)


def test_parents_are_not_pruned_when_the_last_name_of_an_image_with_children_goes(
    client: ImageRemovalClient, store: Store, ns: str
) -> None:
    grandparent = _small("grandparent")
    grandparent_id = store.put(ns, [f"moby-dangling@{grandparent.blob.digest}"], grandparent)
    base_id = store.put(ns, ["docker.io/library/base:latest"], _small("base"), labels={LABEL_PARENT: grandparent_id})
    store.put(ns, ["docker.io/library/app:latest"], _small("app"), labels={LABEL_PARENT: base_id})
    assert pairs(client.remove("base", namespace=ns)) == [untagged("base:latest")]
    assert store.names(ns) == {
        f"moby-dangling@{grandparent_id}",
        f"moby-dangling@{base_id}",
        "docker.io/library/app:latest",
    }
