"""Publish removal events to containerd in order, after the reply, from one queue drained on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace

from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.logs import CALLER

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Batch:
    namespace: str
    reference: str
    items: tuple[Item, ...]
    parent: otel_context.Context  # the removal's trace context: the events span is its child


class EventPublisher:
    """One worker publishes every batch in the order removals finished, one event per item.

    Publishing after the reply saves the caller two containerd round-trips per removal; a subscriber may see
    the events a moment after the caller saw the response. A failed publish is logged, never retried.
    """

    def __init__(self, client: ContainerdClient, tracer: trace.Tracer) -> None:
        self._client = client
        self._tracer = tracer
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def publish(self, namespace: str, reference: str, items: Sequence[Item]) -> None:
        """Queue the events of one removal; returns at once."""
        if not items:
            return
        self._queue.put_nowait(_Batch(namespace, reference[:256], tuple(items), otel_context.get_current()))
        self._ensure_worker()

    async def drain(self, seconds: float) -> None:
        """Wait until every queued event is published (shutdown), at most `seconds`."""
        self._ensure_worker()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), seconds)

    def _ensure_worker(self) -> None:
        if not self._queue.empty() and (self._worker is None or self._worker.done()):
            self._worker = asyncio.create_task(self._run(), name="imageremoval-events")

    async def _run(self) -> None:
        """Publish until the queue is empty, then end (the next publish starts a new worker)."""
        CALLER.set(None)  # the worker serves every removal: its log lines name no single caller
        while not self._queue.empty():
            batch = self._queue.get_nowait()
            try:
                with self._tracer.start_as_current_span(t.SPAN_EVENTS, context=batch.parent) as span:
                    span.set_attribute(t.ATTR_NAMESPACE, batch.namespace)
                    span.set_attribute(t.ATTR_REFERENCE, batch.reference)
                    for item in batch.items:
                        await self._send(batch.namespace, item)
                    span.set_attribute(t.ATTR_EVENTS, len(batch.items))
            finally:
                self._queue.task_done()

    async def _send(self, namespace: str, item: Item) -> None:
        """One event; any failure is logged and the worker goes on with the next."""
        try:
            store = self._client.scope(namespace)  # after the reply: no caller's deadline applies
            if item.kind is ItemKind.UNTAGGED:
                await store.publish_untag(item.image_id, item.value)
            else:
                await store.publish_delete(item.value)
        except RemovalError as exc:
            _log.warning("event not published: %s", exc.message)
        except Exception:
            _log.exception("event not published")
