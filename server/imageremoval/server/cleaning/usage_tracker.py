"""Learn which images are used from containerd's events and a periodic sweep, and record it on the records."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from imageremoval.server.cleaning.inventory import InventoryReader
from imageremoval.server.config import UsageSettings
from imageremoval.server.domain.errors import NotFoundInContainerd, RemovalError
from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.store import ImageStores, StoreEvent, StoreEvents
from imageremoval.server.domain.usage import LABEL_FIRST_SEEN, LABEL_LAST_USED, format_stamp, parse_stamp
from imageremoval.server.telemetry.names import TOPIC_PROBE
from imageremoval.server.telemetry.reclaim_metrics import ReclaimMetrics

_log = logging.getLogger(__name__)
TOPICS = ("/containers/create", "/containers/delete", "/tasks/start", "/tasks/exit", "/images/create")
_SECOND = 1_000_000_000
PROBE_NAMESPACE = "imageremoval-probe"  # events create no namespace; the probe only travels the stream
_MAX_CONTAINERS = 100_000  # container -> images remembered for task events


class UsageTracker:
    """Events mark images used at once (rate-limited writes); the sweep reads every namespace's inventory.

    Nothing here decides what is removed: it only keeps the `imageremoval.io/` labels current.
    """

    def __init__(
        self,
        stores: ImageStores,
        events: StoreEvents,
        reader: InventoryReader,
        settings: UsageSettings,
        clock: Callable[[], int] = time.time_ns,
        metrics: ReclaimMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._stores = stores
        self._events = events
        self._reader = reader
        self._settings = settings
        self._clock = clock
        self._containers: dict[tuple[str, str], tuple[str, ...]] = {}  # (namespace, container) -> image IDs
        self._recent: dict[tuple[str, str], int] = {}  # (namespace, image ID) -> when recorded used
        self._names: dict[tuple[str, str], str] = {}  # (namespace, name containers were created from) -> image ID
        self._tasks: list[asyncio.Task[None]] = []
        self.swept = asyncio.Event()  # the first sweep is done
        self.subscribed = asyncio.Event()  # the event stream is open
        self.writes = 0  # label writes made (each record update counts one)

    def start(self) -> None:
        """Run the event listener and the sweep in the background."""
        if not self._settings.enabled or self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._listen(), name="usage-events"),
            asyncio.create_task(self._sweep_forever(), name="usage-sweep"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def sweep(self, namespaces: Sequence[str] | None = None) -> None:
        """One pass: every image gets its first-seen; every image a container uses (by RemoveImage's lineage
        rule) gets last-used now, unless written less than write_interval ago."""
        for namespace in namespaces if namespaces is not None else await self._stores.namespaces():
            try:
                inventory = await self._reader.read(namespace)
            except RemovalError as exc:
                _log.info("usage sweep of %s failed: %s", namespace, exc.message)
                continue
            now = self._clock()
            seen = {key for key in self._containers if key[0] == namespace}
            for image in inventory.images:
                recorded = await self._record(namespace, image.records, used=image.in_use, now=now, source="sweep")
                if image.in_use:
                    self._recent[(namespace, image.id)] = recorded
                for container in image.users:
                    self._remember(namespace, container, image.id)
                    seen.discard((namespace, container))
            for key in seen:  # containers gone since the last sweep were used until now
                self._containers.pop(key, None)
        self._names.clear()
        if len(self._recent) > _MAX_CONTAINERS:
            self._recent.clear()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except RemovalError as exc:
                _log.info("usage sweep failed: %s", exc.message)
            except Exception:
                _log.exception("usage sweep failed")
            self.swept.set()
            if not self._settings.sweep_interval_s:
                return  # events only: one sweep at start
            await asyncio.sleep(self._settings.sweep_interval_s)

    async def _listen(self) -> None:
        """Follow containerd's events; reconnect after a break (the sweep covers the gap)."""
        while True:
            try:
                self.subscribed.clear()
                probe = asyncio.create_task(self._probe(), name="usage-probe")
                async for event in self._events.events((*TOPICS, TOPIC_PROBE)):
                    if event.topic == TOPIC_PROBE:
                        self.subscribed.set()
                        continue
                    try:
                        await self.on_event(event)
                    except RemovalError as exc:
                        _log.info("usage event %s not recorded: %s", event.topic, exc.message)
            except RemovalError as exc:
                _log.info("containerd's event stream broke: %s", exc.message)
            except Exception:
                _log.exception("containerd's event stream failed")
            finally:
                probe.cancel()
            await asyncio.sleep(1.0)

    async def _probe(self) -> None:
        """Publish probes until our own subscription sees one (containerd confirms no subscription)."""
        for _ in range(600):
            with contextlib.suppress(RemovalError):
                await self._events.probe(PROBE_NAMESPACE, TOPIC_PROBE)
            await asyncio.sleep(0.1)
            if self.subscribed.is_set():
                return

    async def on_event(self, event: StoreEvent) -> None:
        """One event: the images of the container it names are used now; a new image is first seen now."""
        now = self._clock()
        namespace, topic, container = event.namespace, event.topic, event.container
        if topic == "/images/create":
            return await self._first_seen_by_name(event, now)
        if topic == "/containers/create":
            known = self._names.get((namespace, event.image))
            if known is not None and self._fresh((namespace, known), now):
                self._remember(namespace, container, known)  # recorded less than write_interval ago: no read
                return None
            records = await self._records_named(namespace, event.image)
            recorded = await self._record(namespace, records, used=True, now=now)
            if records:
                self._remember(namespace, container, records[0].image_id)
                self._names[(namespace, event.image)] = records[0].image_id
                self._recent[(namespace, records[0].image_id)] = recorded
            return None
        images = self._containers.get((namespace, container), ())
        if topic == "/containers/delete":
            self._containers.pop((namespace, container), None)
        for image_id in images:
            if self._fresh((namespace, image_id), now):
                continue
            records = await self._stores.scope(namespace).records_of(image_id)
            self._recent[(namespace, image_id)] = await self._record(namespace, records, used=True, now=now)
        return None

    def _fresh(self, key: tuple[str, str], now: int) -> bool:
        """Whether this image was recorded as used less than write_interval ago by this process: then its label
        is at most that old, and reading it again would only confirm it. (A name re-pointed to another image
        meanwhile still maps to the old one here until the next sweep, which forgets the names.)"""
        seen = self._recent.get(key)
        return seen is not None and now - seen < int(self._settings.write_interval_s * _SECOND)

    async def _first_seen_by_name(self, event: StoreEvent, now: int) -> None:
        """A new record: one read (its target, which the update must carry) and one write; the event carries
        its labels, so copied usage labels are kept without asking."""
        if not event.image or parse_stamp(event.labels.get(LABEL_FIRST_SEEN, "")) is not None:
            return
        record = await self._stores.scope(event.namespace).image(event.image)  # the update needs its target
        if record is None:
            return
        await self._write(event.namespace, record, {LABEL_FIRST_SEEN: format_stamp(now)}, "event")

    async def _records_named(self, namespace: str, name: str) -> list[ImageRecord]:
        """Every record of the image this name points at (all of them carry the usage)."""
        if not name:
            return []
        store = self._stores.scope(namespace)
        record = await store.image(name)
        if record is None:
            return []
        return await store.records_of(record.image_id)

    def _remember(self, namespace: str, container: str, image_id: str) -> None:
        key = (namespace, container)
        if image_id not in self._containers.get(key, ()):
            self._containers[key] = (*self._containers.get(key, ()), image_id)
        if len(self._containers) > _MAX_CONTAINERS:
            self._containers.pop(next(iter(self._containers)))

    async def _record(
        self, namespace: str, records: Iterable[ImageRecord], *, used: bool, now: int, source: str = "event"
    ) -> int:
        """Write what is missing or stale: first-seen once, last-used at most every write_interval. Returns the
        oldest last-used the records now carry (now when nothing was read)."""
        interval = int(self._settings.write_interval_s * _SECOND)
        oldest = now
        for record in records:
            labels: dict[str, str] = {}
            if parse_stamp(record.labels.get(LABEL_FIRST_SEEN, "")) is None:
                labels[LABEL_FIRST_SEEN] = format_stamp(now)
            if used:
                last = parse_stamp(record.labels.get(LABEL_LAST_USED, ""))
                if last is None or now - last >= interval:
                    labels[LABEL_LAST_USED] = format_stamp(now)
                else:
                    oldest = min(oldest, last)
            if labels:
                await self._write(namespace, record, labels, source)
        return oldest

    async def _write(self, namespace: str, record: ImageRecord, labels: dict[str, str], source: str) -> None:
        """One labels-only update of one record; a record removed meanwhile has nothing to record."""
        try:
            await self._stores.scope(namespace).set_image_labels(record, labels)
        except NotFoundInContainerd:
            return
        self.writes += 1
        if self._metrics is not None:
            self._metrics.label_write(source)
