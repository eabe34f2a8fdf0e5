"""A removal's outcome as operators see it: its phases as spans, and per call one metric sample and log line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from opentelemetry import trace

from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.removal.progress import Progress
from imageremoval.server.removal.request import RemovalRequest
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.logs import removal_fields
from imageremoval.server.telemetry.metrics import RemovalMetrics, outcome_of

_log = logging.getLogger(__name__)


class OutcomeRecorder:
    """Spans, metrics and the log line of every removal; one per server."""

    def __init__(self, tracer: trace.Tracer, metrics: RemovalMetrics | None) -> None:
        self._tracer = tracer
        self.metrics = metrics

    @contextlib.contextmanager
    def phase(self, name: str, request: RemovalRequest) -> Iterator[trace.Span]:
        """One phase's span. A refusal is an answer: the phase turns ERROR with the message, without a
        traceback event (bugs are logged with theirs by `crashed`)."""
        with self._tracer.start_as_current_span(name, record_exception=False) as span:
            span.set_attribute(t.ATTR_NAMESPACE, request.namespace)
            span.set_attribute(t.ATTR_REFERENCE, request.reference[:256])
            yield span

    def succeeded(
        self, request: RemovalRequest, progress: Progress, items: Sequence[Item], seconds: float, span: trace.Span
    ) -> None:
        outcome = t.OUTCOME_MISSING if progress.missing else t.OUTCOME_SUCCESS
        if span.is_recording():
            span.set_attribute(t.ATTR_OUTCOME, outcome)
            span.set_attribute(t.ATTR_ITEMS, len(items))
        deleted = sum(1 for i in items if i.kind is ItemKind.DELETED)
        if self.metrics is not None and not request.validate_only:
            self.metrics.removal(action=progress.action, seconds=seconds, error=None, missing=progress.missing)
            self.metrics.items(request.namespace, deleted=deleted, untagged=len(items) - deleted)
        _log.info(
            "removed %s: %d untagged, %d deleted",
            request.reference[:256],
            len(items) - deleted,
            deleted,
            extra=log_fields(request, outcome, seconds, items=items),
        )

    def refused(
        self, request: RemovalRequest, progress: Progress, error: RemovalError, seconds: float, span: trace.Span
    ) -> None:
        outcome = outcome_of(error)
        if span.is_recording():
            metadata = {f"imageremoval.error.{k}": v for k, v in error.metadata.items()}
            span.add_event(t.EVENT_REFUSED, {t.ATTR_REASON: error.reason.value, **metadata})
            span.set_attribute(t.ATTR_REASON, error.reason.value)
            span.set_attribute(t.ATTR_OUTCOME, outcome)
        if self.metrics is not None:
            self.metrics.removal(action=progress.action, seconds=seconds, error=error)
        _log.info(
            "removal refused: %s",
            error.message,
            extra=log_fields(request, outcome, seconds, reason=error.reason.value, items=progress.items),
        )

    def cancelled(self, request: RemovalRequest, progress: Progress, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.removal(action=progress.action, seconds=seconds, error=None, cancelled=True)
        what = "after changes" if progress.committed else "before any change"
        _log.info(
            "removal cancelled %s",
            what,
            extra=log_fields(request, t.OUTCOME_CANCELLED, seconds, items=progress.items),
        )

    def crashed(self, request: RemovalRequest) -> None:
        """A bug: logged with its traceback (the caller gets INTERNAL without one)."""
        _log.exception("removal failed unexpectedly", extra=log_fields(request, "internal", 0))

    def replayed(self, request: RemovalRequest) -> None:
        _log.info(
            "request_id seen before: answering with that call's outcome",
            extra=log_fields(request, "replayed", 0),
        )


def log_fields(
    request: RemovalRequest, outcome: str, seconds: float, *, reason: str = "", items: Sequence[Item] = ()
) -> dict[str, object]:
    """The structured fields of a removal's log line (names and IDs removed included); user input is clipped."""
    return removal_fields(request.namespace, request.reference, outcome, seconds, reason=reason, items=items)
