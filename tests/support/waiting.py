"""Polling for what a server or daemon reaches asynchronously: bounded by a timeout, never a timed assertion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import grpc

_T = TypeVar("_T")
INTERVAL = 0.05


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 15,
    *,
    ignoring: tuple[type[BaseException], ...] = (grpc.RpcError,),
) -> bool:
    """Whether `predicate` turns true within `timeout` seconds; a call failing with `ignoring` counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except ignoring:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(INTERVAL)


def eventually(probe: Callable[[], _T | None], what: str, timeout: float = 10) -> _T:
    """What `probe` finds within `timeout` seconds; AssertionError naming `what` when it never does."""
    found: list[_T] = []

    def seen() -> bool:
        value = probe()
        if value:
            found.append(value)
        return bool(value)

    if not wait_until(seen, timeout, ignoring=()):
        raise AssertionError(f"never happened: {what}")
    return found[-1]
