"""Removals of one image in this server take turns, so exactly one of racing callers deletes and reports it."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from imageremoval.server.domain.errors import DeadlineExceeded

Key = tuple[str, str]  # (namespace, image ID)
_REMEMBERED = 8192  # changed images remembered for staleness checks; older ones count as changed


class ImageTurns:
    """One lock per (namespace, image ID), plus a change counter telling a removal whether what it read
    before taking its turn is stale (another removal of the image changed it meanwhile).

    This orders the removals of one server; other writers to containerd (another server, `ctr`) are met only
    by the re-read before the first change and containerd's compare-and-delete.
    """

    def __init__(self) -> None:
        self._locks: dict[Key, asyncio.Lock] = {}
        self._users: dict[Key, int] = {}
        self._sequence = 0
        self._changed: OrderedDict[Key, int] = OrderedDict()
        self._floor = 0  # changes at or below this were forgotten

    def mark(self) -> int:
        """Taken before reading the store: a later change to the image makes that read stale."""
        return self._sequence

    def stale(self, key: Key, since: int) -> bool:
        """Whether a removal of this image changed it after `since` (or that can no longer be told)."""
        return self._changed.get(key, 0) > since or since < self._floor

    def changed(self, key: Key) -> None:
        """Record that this image's records were changed by a removal holding its turn."""
        self._sequence += 1
        self._changed[key] = self._sequence
        self._changed.move_to_end(key)
        while len(self._changed) > _REMEMBERED:
            _, forgotten = self._changed.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    async def take(self, key: Key, deadline: float | None) -> None:
        """Wait for this image's turn (until the caller's deadline: then nothing was changed)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            if deadline is None:
                await lock.acquire()
            else:
                await asyncio.wait_for(lock.acquire(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            self._leave(key)
            raise DeadlineExceeded(
                "deadline exceeded waiting for another removal of the same image; nothing was changed",
                {"operation": "turn"},
            ) from None
        except BaseException:
            self._leave(key)
            raise

    def give(self, key: Key) -> None:
        """End this removal's turn."""
        self._locks[key].release()
        self._leave(key)

    def _leave(self, key: Key) -> None:
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key]
            del self._locks[key]
