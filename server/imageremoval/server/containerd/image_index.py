"""The image index kept coherent with containerd's event stream, read through a per-call barrier.

Coherence rules (also in the README, "The image index"):
1. One subscription (every namespace) to `/images/create|update|delete` and to our own barrier topic; one task
   applies the events in the order containerd sent them. Create and update carry no target, so each is applied
   by a point read (Images.Get) of that name; delete drops the name.
2. A namespace's table is built by one Images.List, taken when our own barrier event for that namespace comes
   through the stream: every event after it is applied on top, and a point read is never older than its event.
3. Every call waits for a barrier: we publish a marker event of ours in the namespace and wait until the
   applying task reaches it. containerd sends a mutation's event before answering the mutation, so everything
   any client changed before the barrier was published has been applied when it returns (read-your-writes
   across clients). Calls that start before a barrier is published share it.
4. Any gap drops every table (they are built again at the next call): the stream broke, containerd restarted,
   a point read failed, or a table is older than `max_age_s` (insurance against an event never delivered).
5. No answer from the index (no stream, a barrier not back within `barrier_timeout_s`, a List that failed):
   the caller reads containerd directly, exactly as without an index. The index never decides alone: the
   mutation still carries the expected target, and the lease-and-recheck reads containerd itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.event_decoding import TOPIC_INDEX_BARRIER
from imageremoval.server.containerd.index_table import ImageTable
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.store import StoreEvent

_log = logging.getLogger(__name__)

TOPIC_BARRIER = TOPIC_INDEX_BARRIER  # ImageDelete.name: a token; outside /imageremoval/, our API
TOPIC_IMAGE_CREATE = "/images/create"
TOPIC_IMAGE_UPDATE = "/images/update"
TOPIC_IMAGE_DELETE = "/images/delete"
TOPICS = (TOPIC_IMAGE_CREATE, TOPIC_IMAGE_UPDATE, TOPIC_IMAGE_DELETE, TOPIC_BARRIER)
_REPUBLISH_S = 0.05  # until the stream has delivered anything, a barrier may predate the subscription


@dataclass(slots=True)
class _Barrier:
    token: str
    namespace: str
    done: asyncio.Future[ImageTable | None]
    sent: bool = False  # from here on, a call that starts must publish a barrier of its own


@dataclass(slots=True)
class IndexStats:
    """What the index did, for tests and the benchmark."""

    builds: int = 0  # namespace tables built by List
    gaps: int = 0  # times every table was dropped (stream broke, containerd restarted, read failed, too old)
    events: int = 0  # image events applied
    barriers: int = 0  # barriers published
    fallbacks: int = 0  # calls answered by containerd directly because the index could not answer
    builds_by_namespace: dict[str, int] = field(default_factory=dict)


class ImageIndex:
    """Per-namespace image tables, coherent with containerd's events; `table()` is the only way to read them."""

    def __init__(
        self,
        client: ContainerdClient,
        *,
        barrier_timeout_s: float = 2.0,
        max_age_s: float = 300.0,
        max_namespaces: int = 64,
    ) -> None:
        self._client = client
        self._barrier_timeout = barrier_timeout_s
        self._max_age = max_age_s
        self._max_namespaces = max_namespaces
        self._tables: OrderedDict[str, tuple[ImageTable, float]] = OrderedDict()
        self._open: dict[str, _Barrier] = {}  # namespace -> the barrier calls may still join
        self._waiting: dict[str, _Barrier] = {}  # token -> barrier not yet seen in the stream
        self._delivering = False  # the current stream has delivered at least one event
        self._task: asyncio.Task[None] | None = None
        self._stream: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        self.stats = IndexStats()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="image-index")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._gap("stopped")

    def interrupt(self) -> None:
        """Break the current event stream, as containerd closing it would (for tests of the resync)."""
        if self._stream is not None:
            self._stream.cancel()

    async def table(self, namespace: str, deadline: float | None = None) -> ImageTable | None:
        """The namespace's table with every change made before this call applied; None: read containerd."""
        if self._task is None or self._task.done():
            self.stats.fallbacks += 1
            return None
        barrier = self._open.get(namespace)
        if barrier is None or barrier.sent:
            barrier = _Barrier(uuid.uuid4().hex, namespace, asyncio.get_running_loop().create_future())
            self._open[namespace] = barrier
            self._waiting[barrier.token] = barrier
            publishing = asyncio.create_task(self._publish(barrier))
            self._publishing.add(publishing)  # the loop keeps only a weak reference to a task
            publishing.add_done_callback(self._publishing.discard)
        # `deadline` is the caller's: past it, the direct read answers DEADLINE_EXCEEDED.
        wait = self._barrier_timeout if deadline is None else min(self._barrier_timeout, deadline - time.monotonic())
        try:
            found = await asyncio.wait_for(asyncio.shield(barrier.done), max(wait, 0.0))
        except TimeoutError:
            if wait >= self._barrier_timeout:
                self._settle(barrier, None)  # lost: every call sharing it reads containerd instead
            found = None
        if found is None:
            self.stats.fallbacks += 1
        return found

    async def _publish(self, barrier: _Barrier) -> None:
        barrier.sent = True
        if self._open.get(barrier.namespace) is barrier:
            del self._open[barrier.namespace]
        store = self._client.scope(barrier.namespace)
        try:
            deadline = time.monotonic() + self._barrier_timeout
            while not barrier.done.done():
                await store.publish_marker(TOPIC_BARRIER, barrier.token)
                self.stats.barriers += 1
                if self._delivering or time.monotonic() > deadline:
                    return
                with contextlib.suppress(TimeoutError):  # the subscription may not be registered yet
                    await asyncio.wait_for(asyncio.shield(barrier.done), _REPUBLISH_S)
        except RemovalError as exc:
            _log.info("image index barrier not published: %s", exc.message)
            self._settle(barrier, None)

    def _settle(self, barrier: _Barrier, table: ImageTable | None) -> None:
        self._waiting.pop(barrier.token, None)
        if not barrier.done.done():
            barrier.done.set_result(table)

    async def _follow(self) -> None:
        """Follow the stream for ever; after a break, drop everything and subscribe again."""
        while True:
            self._stream = asyncio.create_task(self._consume())
            try:
                await self._stream
            except asyncio.CancelledError:
                if self._task is not None and self._task.cancelling():
                    raise
            except RemovalError as exc:
                _log.info("image index: containerd's event stream broke: %s", exc.message)
            except Exception:
                _log.exception("image index: the event stream failed")
            self._gap("stream broken")
            await asyncio.sleep(0.1)

    async def _consume(self) -> None:
        self._delivering = False
        async for event in self._client.events(TOPICS):
            self._delivering = True
            if event.topic == TOPIC_BARRIER:
                await self._on_barrier(event.namespace, event.image)
            elif event.namespace in self._tables:
                await self._on_image_event(event)

    async def _on_barrier(self, namespace: str, token: str) -> None:
        barrier = self._waiting.get(token)
        if barrier is None:
            return  # another server's, a republished one, or one whose waiters gave up
        entry = self._tables.get(namespace)
        if entry is not None and time.monotonic() - entry[1] > self._max_age:
            del self._tables[namespace]  # insurance against an event containerd never delivered
            entry = None
        if entry is None:
            try:
                table = ImageTable(await self._client.scope(namespace).list_all_images())
            except RemovalError as exc:
                _log.info("image index: listing %s failed: %s", namespace, exc.message)
                self._settle(barrier, None)
                return
            self.stats.builds += 1
            self.stats.builds_by_namespace[namespace] = self.stats.builds_by_namespace.get(namespace, 0) + 1
            entry = (table, time.monotonic())
            self._tables[namespace] = entry
            while len(self._tables) > self._max_namespaces:
                self._tables.popitem(last=False)
        self._tables.move_to_end(namespace)
        self._settle(barrier, entry[0])

    async def _on_image_event(self, event: StoreEvent) -> None:
        table = self._tables[event.namespace][0]
        self.stats.events += 1
        name = event.image
        if event.topic == TOPIC_IMAGE_DELETE:
            table.drop(name)
            return
        try:
            found = await self._client.scope(event.namespace).read_image(name)
        except RemovalError as exc:
            _log.info("image index: reading %s failed (%s); rebuilding", name, exc.message)
            self._gap("point read failed")
            return
        if found is None:
            table.drop(name)
        else:
            table.put(found)

    def _gap(self, why: str) -> None:
        """Forget every table; waiting calls read containerd directly."""
        if self._tables or self._waiting:
            _log.info("image index: resync (%s)", why)
        self.stats.gaps += 1
        self._delivering = False
        self._tables.clear()
        for barrier in list(self._waiting.values()):
            self._settle(barrier, None)
        self._open.clear()
