"""Interceptors that hold one kind of containerd call until the test lets it go, or act right before it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from .interceptors import method_of


class Gate(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Holds the calls whose method ends with `suffix`: `entered` is set when the first arrives, and each
    waits until `opened`. Everything runs on the test's own event loop: no sleeps, no timing."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if method_of(details).endswith(self.suffix):
            self.entered.set()
            await self.opened.wait()
        return await continuation(details, request)


class Before(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Runs `action` once, right before the first call whose method ends with `suffix`."""

    def __init__(self, suffix: str, action: Callable[[], None]) -> None:
        self.suffix = suffix
        self.action: Callable[[], None] | None = action

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if self.action is not None and method_of(details).endswith(self.suffix):
            action, self.action = self.action, None
            action()
        return await continuation(details, request)
