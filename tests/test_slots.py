"""The per-client share of removal slots: held back for other clients only while one holds or waits for a slot."""

from __future__ import annotations

import contextlib

import pytest

from imageremoval.server.domain.errors import TooManyRemovals
from imageremoval.server.domain.policy import WAIT_WINDOW_S, ConcurrencyLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _take(limit: ConcurrencyLimit, stack: contextlib.ExitStack, client: str, count: int) -> None:
    for _ in range(count):
        stack.enter_context(limit.slot(client))


def test_a_single_client_gets_every_slot() -> None:
    limit = ConcurrencyLimit(32)
    with contextlib.ExitStack() as stack:
        _take(limit, stack, "unix", 32)
        with pytest.raises(TooManyRemovals) as refused, limit.slot("unix"):
            pass
    assert "clientLimit" not in refused.value.metadata  # the node is full, not this client's share


def test_the_share_holds_while_another_client_holds_a_slot() -> None:
    limit = ConcurrencyLimit(32)
    with contextlib.ExitStack() as stack:
        _take(limit, stack, "other", 1)
        _take(limit, stack, "agent", 24)
        with pytest.raises(TooManyRemovals) as refused, limit.slot("agent"):
            pass
        assert refused.value.metadata["clientLimit"] == "24"
        _take(limit, stack, "other", 7)  # the reserved quarter stays for the others


def test_the_share_holds_while_another_client_waits_and_lapses_after_the_window() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(4, clock=clock)
    with contextlib.ExitStack() as stack:
        _take(limit, stack, "agent", 4)
        with pytest.raises(TooManyRemovals), limit.slot("other"):
            pass  # the other client now waits
        stack.close()
        _take(limit, stack, "agent", 3)
        with pytest.raises(TooManyRemovals) as refused, limit.slot("agent"):
            pass
        assert refused.value.metadata["clientLimit"] == "3"
        clock.now += WAIT_WINDOW_S + 1  # the other client gave up: the agent is alone again
        _take(limit, stack, "agent", 1)


def test_a_waiting_client_that_gets_its_slot_no_longer_holds_back_the_others() -> None:
    limit = ConcurrencyLimit(2)
    with contextlib.ExitStack() as stack:
        _take(limit, stack, "agent", 2)
        with pytest.raises(TooManyRemovals), limit.slot("other"):
            pass
    with limit.slot("other"):
        pass
    with contextlib.ExitStack() as stack:
        _take(limit, stack, "agent", 2)
