"""One removal in progress: its request, what it changed so far, the store it asks, and its checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from imageremoval.server.domain.policy import RemovalPolicy
from imageremoval.server.domain.store import ImageStore
from imageremoval.server.removal.progress import Progress
from imageremoval.server.removal.recording import OutcomeRecorder
from imageremoval.server.removal.request import RemovalRequest
from imageremoval.server.removal.turns import ImageTurns


@dataclass(frozen=True, slots=True)
class Services:
    """What every removal of a server shares: policy, telemetry, turns, and where after-reply work goes."""

    policy: RemovalPolicy
    recorder: OutcomeRecorder
    turns: ImageTurns
    settle_seconds: float  # how long a change whose answer was lost waits for containerd to answer again
    later: Callable[[Coroutine[Any, Any, None]], None]  # work the answer does not wait for (drained on shutdown)


@dataclass(slots=True)
class Call:
    """One removal. `store` is bounded by the caller's deadline until the first change; from then on the
    removal runs to its end, bounded by the adapter's own timeout only."""

    request: RemovalRequest
    progress: Progress
    store: ImageStore
    services: Services

    def checkpoint(self) -> None:
        """Between phases: stop if the caller went away or its deadline is too close (nothing changed yet)."""
        if self.progress.cancelled:
            raise asyncio.CancelledError
        self.services.policy.check_deadline(self.request.deadline)

    def commit(self) -> None:
        """The last moment to refuse with nothing changed; from here on the removal runs to its end."""
        self.checkpoint()
        self.progress.committed = True
        self.store = self.store.unbounded()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[trace.Span]:
        """The span of one phase of this removal."""
        with self.services.recorder.phase(name, self.request) as span:
            yield span
