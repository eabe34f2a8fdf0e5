"""The image index: answers as containerd's filtered Lists would, and never less safe than reading containerd."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imageremoval.client import ImageRemovalClient, ImageRemovalError, RemovedItem
from imageremoval.server.config import ServerConfig, UsageSettings
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.containerd.image_index import ImageIndex
from imageremoval.server.containerd.index_table import ImageTable
from imageremoval.server.domain.model import LABEL_PARENT, Descriptor, ImageRecord

from .support.ctr import Ctr
from .support.images import file_layer, manifest
from .support.interceptors import RecordingInterceptor
from .support.items import deleted, pairs, untagged
from .support.server import Server, ServerThread
from .support.store import Store

ROUNDS = 8  # bounded stress: each round races a change of another client against a removal
SLOW_GET_S = 0.1  # how late the index applies a created or updated record (its point read is held back)


class SlowGets(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Holds back every Images.Get the server sends, so the index applies create and update events late: a
    removal that did not wait for its barrier would read a table without the other client's change."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.endswith("/containerd.services.images.v1.Images/Get"):
            await asyncio.sleep(SLOW_GET_S)
        return await continuation(details, request)


@pytest.fixture(scope="module")
def slow(containerd: PrivateContainerd) -> Iterator[Server]:
    """A server of its own whose index lags the store by SLOW_GET_S for every new or re-pointed name."""
    config = ServerConfig(listen="127.0.0.1:0", usage=UsageSettings(enabled=False))
    thread = ServerThread(config, containerd.address, TracerProvider(), containerd_interceptors=[SlowGets()])
    yield Server(thread, InMemorySpanExporter())
    thread.stop()


@pytest.fixture(scope="module")
def slow_client(slow: Server) -> Iterator[ImageRemovalClient]:
    with ImageRemovalClient(slow.target) as c:
        yield c


def _record(name: str, digest_hex: str, parent: str = "") -> ImageRecord:
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", f"sha256:{digest_hex * 64}"[:71], 1)
    return ImageRecord(name, target, {LABEL_PARENT: parent} if parent else {})


def test_the_table_answers_by_name_target_prefix_and_parent() -> None:
    a, b, c = _record("a:1", "a"), _record("a:2", "a"), _record("child:1", "c", parent="sha256:" + "a" * 64)
    table = ImageTable([a, b, c, _record("other:1", "ab")])
    assert table.get("a:1") == a
    assert [r.name for r in table.with_target(a.image_id)] == ["a:1", "a:2"]
    assert [r.name for r in table.related(a.image_id)] == ["a:1", "a:2", "child:1"]
    assert [r.name for r in table.by_id_prefix("aa", "nope:latest")] == ["a:1", "a:2"]
    assert [r.name for r in table.by_id_prefix("a", "nope:latest")] == ["a:1", "a:2", "other:1"]
    assert [r.name for r in table.by_id_prefix("ab", "child:1")] == ["child:1", "other:1"]


def test_a_replaced_or_dropped_record_leaves_no_trace_in_any_lookup() -> None:
    table = ImageTable([_record("a:1", "a"), _record("child:1", "c", parent="sha256:" + "a" * 64)])
    table.put(_record("a:1", "b"))  # re-pointed
    table.drop("child:1")
    assert table.with_target("sha256:" + "a" * 64) == []
    assert table.related("sha256:" + "a" * 64) == []
    assert table.by_id_prefix("a", "x:latest") == []
    assert [r.name for r in table.by_id_prefix("b", "x:latest")] == ["a:1"]
    table.drop("a:1")
    assert len(table) == 0 and table.by_id_prefix("", "x:latest") == []


def _index(server: Server) -> ImageIndex:
    index = server.thread.app.index
    assert index is not None
    return index


def _image(note: str):  # type: ignore[no-untyped-def]
    return manifest((file_layer("f.txt", note.encode()),), note=note)


def test_removals_are_answered_from_the_index_built_once(
    server: Server, client: ImageRemovalClient, store: Store, ns: str
) -> None:
    for n in range(3):
        store.put(ns, [f"docker.io/library/i{n}:latest"], _image(f"once-{n}"))
    fallbacks = _index(server).stats.fallbacks
    for n in range(3):
        client.remove(f"i{n}", namespace=ns)
    # Built by one List; every later call only waited for its barrier, and none had to read containerd instead.
    assert _index(server).stats.builds_by_namespace[ns] == 1
    assert _index(server).stats.fallbacks == fallbacks


def test_a_tag_another_client_just_created_is_seen(slow_client: ImageRemovalClient, store: Store, ns: str) -> None:
    """Read-your-writes across clients: the tag is created and the removal sent at once, with no wait."""
    client = slow_client
    outcomes: Counter[str] = Counter()
    for n in range(ROUNDS):
        image_id = store.put(ns, [f"docker.io/library/a{n}:latest"], _image(f"tag-{n}"))
        client.remove("docker.io/library/warm:latest", namespace=ns, allow_missing=True)  # the index is built
        assert store.tag(ns, f"docker.io/library/a{n}:latest", f"docker.io/library/b{n}:latest")
        items = pairs(client.remove(f"a{n}", namespace=ns))
        outcomes["untagged only" if items == [untagged(f"a{n}:latest")] else f"other {items}"] += 1
        assert store.target(ns, f"docker.io/library/b{n}:latest") == image_id
    assert outcomes == {"untagged only": ROUNDS}


def test_a_name_moved_just_before_a_removal_is_removed_where_it_points_now(
    slow_client: ImageRemovalClient, store: Store, ns: str
) -> None:
    client = slow_client
    outcomes: Counter[str] = Counter()
    for n in range(ROUNDS):
        first = store.put(ns, [f"docker.io/library/m{n}:latest"], _image(f"first-{n}"))
        second = store.put(ns, [f"docker.io/library/keep{n}:latest"], _image(f"second-{n}"))
        client.remove("docker.io/library/warm:latest", namespace=ns, allow_missing=True)
        store.delete_record(ns, f"docker.io/library/m{n}:latest")
        assert store.tag(ns, f"docker.io/library/keep{n}:latest", f"docker.io/library/m{n}:latest")
        items = pairs(client.remove(f"m{n}", namespace=ns))
        outcomes["the new target untagged" if items == [untagged(f"m{n}:latest")] else f"other {items}"] += 1
        assert store.target(ns, f"docker.io/library/keep{n}:latest") == second
        assert store.has(ns, second) and not store.has(ns, first)
    assert outcomes == {"the new target untagged": ROUNDS}


def test_a_container_created_just_before_a_removal_is_seen(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: object
) -> None:
    outcomes: Counter[str] = Counter()
    for n in range(4):
        name = f"docker.io/library/c{n}:latest"
        image_id = store.put(ns, [name], manifest((busybox,), note=f"ctr-{n}"))  # type: ignore[arg-type]
        client.remove("docker.io/library/warm:latest", namespace=ns, allow_missing=True)
        ctr.create(ns, name, f"user{n}")
        try:
            client.remove(name, namespace=ns)
            outcomes["removed"] += 1
        except ImageRemovalError as error:
            outcomes[error.reason] += 1
        assert store.has(ns, image_id)
    assert outcomes == {"IMAGE_CONFLICT": 4}, outcomes


def test_a_broken_event_stream_is_followed_by_a_resync(
    slow: Server, slow_client: ImageRemovalClient, store: Store, ns: str
) -> None:
    """The stream is cut between a tag and the removal, every round: the removal still sees the tag."""
    server, client = slow, slow_client
    index = _index(server)
    gaps = index.stats.gaps
    outcomes: Counter[str] = Counter()
    for n in range(ROUNDS):
        image_id = store.put(ns, [f"docker.io/library/s{n}:latest"], _image(f"stream-{n}"))
        client.remove("docker.io/library/warm:latest", namespace=ns, allow_missing=True)
        server.thread.loop.call_soon_threadsafe(index.interrupt)
        assert store.tag(ns, f"docker.io/library/s{n}:latest", f"docker.io/library/t{n}:latest")
        items = pairs(client.remove(f"s{n}", namespace=ns))
        outcomes["untagged only" if items == [untagged(f"s{n}:latest")] else f"other {items}"] += 1
        items = pairs(client.remove(f"t{n}", namespace=ns))
        outcomes["then deleted" if items == [untagged(f"t{n}:latest"), deleted(image_id)] else f"other {items}"] += 1
    assert outcomes == {"untagged only": ROUNDS, "then deleted": ROUNDS}
    assert index.stats.gaps >= gaps + ROUNDS  # every cut was noticed, and every table rebuilt


@pytest.fixture
def own_containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateContainerd]:
    daemon = PrivateContainerd(tmp_path_factory.mktemp("index-restart"))
    daemon.start()
    yield daemon
    daemon.stop()


def test_a_restarted_containerd_is_followed_by_a_resync(own_containerd: PrivateContainerd) -> None:
    config = ServerConfig(listen="127.0.0.1:0", usage=UsageSettings(enabled=False))
    thread = ServerThread(config, own_containerd.address, TracerProvider())
    store = Store(own_containerd.address)
    ns = "index-restart"
    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client:
            for n in range(3):
                image_id = store.put(ns, [f"docker.io/library/r{n}:latest"], _image(f"restart-{n}"))
                client.remove("docker.io/library/warm:latest", namespace=ns, allow_missing=True)
                process = own_containerd._process  # our own child
                assert process is not None
                process.kill()
                process.wait(10)
                own_containerd.stop()  # releases its pid file and lock
                own_containerd.start()
                store.close()
                store = Store(own_containerd.address)  # a fresh channel: the old one backs off for a while
                assert store.tag(ns, f"docker.io/library/r{n}:latest", f"docker.io/library/q{n}:latest")
                assert pairs(_remove_when_up(client, f"r{n}", ns)) == [untagged(f"r{n}:latest")]
                assert store.target(ns, f"docker.io/library/q{n}:latest") == image_id
        index = thread.app.index
        assert index is not None and index.stats.builds_by_namespace[ns] >= 4
    finally:
        store.close()
        thread.stop()


def _remove_when_up(client: ImageRemovalClient, reference: str, ns: str) -> list[RemovedItem]:
    """containerd was just restarted: UNAVAILABLE (nothing done) until our channel reconnects."""
    for _ in range(100):
        try:
            return list(client.remove(reference, namespace=ns))
        except ImageRemovalError as error:
            if error.reason != "CONTAINERD_UNAVAILABLE":
                raise
        time.sleep(0.1)
    raise AssertionError("containerd did not come back")


def test_with_its_stream_stopped_the_index_answers_nothing_and_reads_go_to_containerd(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0", usage=UsageSettings(enabled=False)), containerd.address, TracerProvider()
    )
    try:
        index = thread.app.index
        assert index is not None
        thread.call(index.stop())
        image_id = store.put(ns, ["docker.io/library/direct:latest"], _image("direct"))
        assert store.tag(ns, "docker.io/library/direct:latest", "docker.io/library/other:latest")
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client:
            assert pairs(client.remove("direct", namespace=ns)) == [untagged("direct:latest")]
            assert pairs(client.remove("other", namespace=ns)) == [untagged("other:latest"), deleted(image_id)]
        assert index.stats.builds == 0 and index.stats.fallbacks >= 2
    finally:
        thread.stop()


def test_an_execute_prune_reads_its_removals_from_one_index_and_scans_nothing(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    recorder = RecordingInterceptor()
    config = ServerConfig(listen="127.0.0.1:0", usage=UsageSettings(enabled=False))
    thread = ServerThread(config, containerd.address, TracerProvider(), containerd_interceptors=[recorder])
    images = [_image(f"pruned-{n}") for n in range(6)]
    for image in images:
        store.put(ns, [f"moby-dangling@{image.blob.digest}"], image)
    try:
        with ImageRemovalClient(f"127.0.0.1:{thread.port}") as client:
            plan = client.plan_prune(namespace=ns)
            recorder.calls.clear()
            summary = list(client.execute_prune(plan))[-1].summary
        index = thread.app.index
        assert index is not None
    finally:
        thread.stop()
    assert summary.images_removed == 6
    # Every removal resolved and re-read from the index: no filtered Images.List (a scan of the namespace).
    scans = [r for m, r in recorder.calls if m.endswith("/containerd.services.images.v1.Images/List") and r.filters]
    assert scans == []
    assert index.stats.builds_by_namespace[ns] == 1
    assert not any(store.has(ns, b.digest) for image in images for b in image.blobs)
