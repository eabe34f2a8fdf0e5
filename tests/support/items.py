"""Response items as Docker prints them: (kind, value) pairs, for comparing with `docker rmi` output."""

from __future__ import annotations

from collections.abc import Sequence

from imageremoval.client import RemovedItem


def pairs(items: Sequence[RemovedItem]) -> list[tuple[str, str]]:
    """Response items as (kind, value), easy to compare with Docker's output."""
    return [(item.kind, item.value) for item in items]


def untagged(value: str) -> tuple[str, str]:
    return ("untagged", value)


def deleted(value: str) -> tuple[str, str]:
    return ("deleted", value)
