"""The request_id window (AIP-155) as pure logic: what is kept, for how long, and per which scope."""

from __future__ import annotations

import asyncio

import pytest

from imageremoval.server.domain.errors import ImageNotFound, InvalidArgument, Reason, RemovalIncomplete
from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.removal.answers import WINDOW_SECONDS, RecentAnswers, check_request_id

ITEMS = [Item(ItemKind.DELETED, "sha256:" + "a" * 64, "sha256:" + "a" * 64)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _done(result: list[Item] | Exception) -> list[Item]:
    if isinstance(result, Exception):
        raise result
    return result


async def _settle(answers: RecentAnswers, key: tuple[str, tuple[str, ...], str], result: object, changed: bool) -> None:
    task = asyncio.create_task(_done(result))  # type: ignore[arg-type]
    answers.track(key, ("fp",), task, lambda: changed)
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)


async def test_a_success_is_kept_for_the_window_and_then_forgotten() -> None:
    clock = Clock()
    answers = RecentAnswers(clock)
    key = ("default", (), "id-1")
    await _settle(answers, key, ITEMS, True)
    assert answers.join(key, ("fp",)) is not None
    assert answers.join(("other-ns", (), "id-1"), ("fp",)) is None, "scoped per namespace"
    assert answers.join(("default", ("spiffe://x",), "id-1"), ("fp",)) is None, "scoped per caller"
    clock.now += WINDOW_SECONDS + 1
    assert answers.join(key, ("fp",)) is None


async def test_a_failure_that_changed_nothing_is_forgotten_and_one_after_a_change_is_kept() -> None:
    answers = RecentAnswers(Clock())
    await _settle(answers, ("ns", (), "a"), ImageNotFound("x"), False)
    await _settle(answers, ("ns", (), "b"), RemovalIncomplete("half", {}), True)
    assert answers.join(("ns", (), "a"), ("fp",)) is None
    assert answers.join(("ns", (), "b"), ("fp",)) is not None


async def test_a_reused_id_with_another_request_is_refused() -> None:
    answers = RecentAnswers(Clock())
    await _settle(answers, ("ns", (), "c"), ITEMS, True)
    with pytest.raises(InvalidArgument) as caught:
        answers.join(("ns", (), "c"), ("another",))
    assert caught.value.reason.value == Reason.INVALID_REQUEST_ID


def test_request_ids_are_short_printable_ascii() -> None:
    check_request_id("0f8fad5b-d9cb-469f-a165-70867728950e")
    for bad in ("x" * 129, "caf\u00e9", "a\nb"):
        with pytest.raises(InvalidArgument):
            check_request_id(bad)
