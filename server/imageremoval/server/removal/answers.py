"""AIP-155 request IDs: a retry with the same ID within the window gets the original answer, not NOT_FOUND."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from imageremoval.server.domain.errors import InvalidArgument, Reason, RemovalError
from imageremoval.server.domain.model import Item

WINDOW_SECONDS = 600.0  # how long an answer is kept for retries with the same request ID
MAX_ANSWERS = 10_000  # answers kept at most (oldest first out)
MAX_ITEMS = 200_000  # items kept across all answers at most (a 4,500-name removal is one answer)
MAX_REQUEST_ID = 128

Key = tuple[str, tuple[str, ...], str]  # (namespace, caller identities, request ID)


@dataclass(slots=True)
class _Answer:
    fingerprint: Hashable  # the request apart from its ID: a reused ID with another request is refused
    task: asyncio.Task[list[Item]]
    expires: float = float("inf")  # set when the call ends and its answer is worth keeping
    items: int = 0


def check_request_id(request_id: str) -> None:
    """1 to 128 printable ASCII characters (a UUID4 is what clients should send)."""
    if len(request_id) > MAX_REQUEST_ID or not request_id.isascii() or not request_id.isprintable():
        raise InvalidArgument(
            Reason.INVALID_REQUEST_ID,
            f"request_id must be 1 to {MAX_REQUEST_ID} printable ASCII characters, such as a UUID",
            {"length": str(len(request_id))},
        )


class RecentAnswers:
    """The answers to recent calls that carried a request ID, scoped per namespace and caller identity.

    Kept: every success, and every failure after the first change (REMOVAL_INCOMPLETE, OUTCOME_UNKNOWN, or a
    conflict found after a restore), since running such a call again would answer something else. Failures
    that changed nothing are forgotten at once: a retry runs again. A call still running is joined.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answers: OrderedDict[Key, _Answer] = OrderedDict()
        self._items = 0

    def join(self, key: Key, fingerprint: Hashable) -> asyncio.Task[list[Item]] | None:
        """The earlier call's task for this key (running or with a kept answer); None if there is none."""
        self._expire()
        answer = self._answers.get(key)
        if answer is None:
            return None
        if answer.fingerprint != fingerprint:
            raise InvalidArgument(
                Reason.INVALID_REQUEST_ID,
                "request_id was already used for a different request",
                {"requestId": key[2]},
            )
        return answer.task

    def track(
        self, key: Key, fingerprint: Hashable, task: asyncio.Task[list[Item]], changed: Callable[[], bool]
    ) -> None:
        """Remember the call; once it ends, keep its answer if it is worth keeping (`changed()`: a failure
        that came after a change)."""
        answer = _Answer(fingerprint, task)
        self._answers[key] = answer

        def ended(done: asyncio.Task[list[Item]]) -> None:
            if self._answers.get(key) is not answer:
                return
            error = None if done.cancelled() else done.exception()
            keep = not done.cancelled() and (error is None or (isinstance(error, RemovalError) and changed()))
            if not keep:
                del self._answers[key]
                return
            answer.expires = self._clock() + WINDOW_SECONDS
            answer.items = len(done.result()) if error is None else 0
            self._items += answer.items
            self._expire()

        task.add_done_callback(ended)

    def _expire(self) -> None:
        now = self._clock()
        while self._answers:
            key, oldest = next(iter(self._answers.items()))
            over = len(self._answers) > MAX_ANSWERS or self._items > MAX_ITEMS
            if oldest.expires > now and not (over and oldest.task.done()):
                break
            del self._answers[key]
            self._items -= oldest.items
