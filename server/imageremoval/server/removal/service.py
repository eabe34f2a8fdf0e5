"""RemoveImage's use case: one task per call that resolves, takes the image's turn and runs the right removal."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from typing import Any

from opentelemetry import trace

from imageremoval.server.domain.container_users import ContainerUsers
from imageremoval.server.domain.docker_rules import DeleteImage, Resolution, Untag, decide
from imageremoval.server.domain.errors import ImageChanged, ImageNotFound, RemovalError
from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.domain.platforms import PlatformSpec, validate_platforms
from imageremoval.server.domain.policy import ConcurrencyLimit, RemovalPolicy
from imageremoval.server.domain.references import IdReference, Reference, parse_reference
from imageremoval.server.domain.store import ChangeEvents, ImageStores
from imageremoval.server.removal.answers import RecentAnswers, check_request_id
from imageremoval.server.removal.call import Call, Services
from imageremoval.server.removal.delete import delete
from imageremoval.server.removal.outcomes import SETTLE_SECONDS
from imageremoval.server.removal.platform_removal import remove_platforms
from imageremoval.server.removal.progress import Progress
from imageremoval.server.removal.recording import OutcomeRecorder
from imageremoval.server.removal.request import RemovalRequest, answer_key
from imageremoval.server.removal.resolve import resolve
from imageremoval.server.removal.turns import ImageTurns
from imageremoval.server.removal.untag import untag
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.metrics import RemovalMetrics

__all__ = ["ImageRemover", "Item", "ItemKind", "PlatformSpec", "RemovalRequest"]


class ImageRemover:
    """Removes images with Docker's semantics; one instance serves every request."""

    def __init__(
        self,
        stores: ImageStores,
        tracer: trace.Tracer,
        metrics: RemovalMetrics | None = None,
        policy: RemovalPolicy | None = None,
        *,
        events: ChangeEvents,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self._stores = stores
        self._events = events
        self._recorder = OutcomeRecorder(tracer, metrics)
        policy = policy or RemovalPolicy()
        self._limit = ConcurrencyLimit(policy.max_concurrent)
        self._running: set[asyncio.Task[Any]] = set()
        self._answers = RecentAnswers()
        self._services = Services(policy, self._recorder, ImageTurns(), settle_seconds, self._later)

    async def remove(self, request: RemovalRequest) -> list[Item]:
        """Remove one reference; every conflict is checked before the first change.

        The removal runs in a task of its own: if the caller cancels, it stops at the next phase boundary
        when nothing has changed yet, and otherwise finishes (events, log, metrics included). A call with a
        request ID already seen (same namespace and caller) gets that call's answer.
        """
        key = answer_key(request)
        if key is not None:
            try:
                earlier = self._answers.join(key, request.fingerprint())
            except RemovalError as error:
                self._recorder.refused(request, Progress(), error, 0.0, trace.get_current_span())
                raise
            if earlier is not None:
                self._recorder.replayed(request)
                return list(await asyncio.shield(earlier))
        store = self._stores.scope(request.namespace, deadline=request.deadline)
        call = Call(request, Progress(), store, self._services)
        task = asyncio.create_task(self._observed(call))
        if key is not None:
            self._answers.track(key, request.fingerprint(), task, lambda: call.progress.committed)
        self._running.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._running.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            call.progress.cancelled = True
            raise

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run work that the answer does not depend on after the reply; `drain` waits for it."""
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def drain(self, seconds: float) -> None:
        """Wait for removals whose callers went away to finish their changes, then for their events."""
        deadline = time.monotonic() + seconds
        pending = [task for task in self._running if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=seconds)
        await self._events.drain(max(deadline - time.monotonic(), 0.1))

    async def _observed(self, call: Call) -> list[Item]:
        """The removal with its outcome recorded: server-span attributes and event, metrics, one log line."""
        request, progress = call.request, call.progress
        start = time.perf_counter()
        span = trace.get_current_span()  # the RPC's server span
        try:
            with self._limit.slot(request.client):
                try:
                    items = await self._remove(call)
                finally:
                    # Every change gets its event, also when the call fails after changing something.
                    if not request.validate_only:
                        self._events.publish(request.namespace, request.reference, progress.items)
        except RemovalError as error:
            self._recorder.refused(request, progress, error, time.perf_counter() - start, span)
            raise
        except asyncio.CancelledError:
            self._recorder.cancelled(request, progress, time.perf_counter() - start)
            raise
        except Exception as exc:
            self._recorder.crashed(request)
            failure = progress.incomplete(RemovalError("internal error; see the server log"))
            self._recorder.refused(request, progress, failure, time.perf_counter() - start, span)
            raise failure from exc
        self._recorder.succeeded(request, progress, items, time.perf_counter() - start, span)
        return items

    def check(self, request: RemovalRequest) -> Reference:
        """The checks that need no containerd (namespace, request ID, platforms, reference): a request that
        fails them is refused before anything is read."""
        self._services.policy.check_namespace(request.namespace, request.identities)
        if request.request_id:
            check_request_id(request.request_id)
        validate_platforms(request.platforms, request.force)
        return parse_reference(request.reference)

    async def _remove(self, call: Call) -> list[Item]:
        request = call.request
        reference = self.check(request)
        call.checkpoint()
        # The container list does not depend on what the reference resolves to: ask for it meanwhile.
        containers = asyncio.create_task(ContainerUsers.load(call.store))
        try:
            return await self._resolved(call, reference, containers)
        finally:
            # Let it finish rather than cancel it: a cancelled call would leave its client span unended.
            await asyncio.gather(containers, return_exceptions=True)

    async def _resolved(self, call: Call, reference: Reference, containers: asyncio.Task[ContainerUsers]) -> list[Item]:
        request, progress = call.request, call.progress
        with call.phase(t.SPAN_RESOLVE) as span:
            found = await self._resolve_in_turn(call, reference)
            if found is None:
                span.set_attribute(t.ATTR_OUTCOME, t.OUTCOME_MISSING)
                progress.missing = True
                return []
            resolution = found
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            span.set_attribute(t.ATTR_REFERENCES, len(resolution.all))
        if request.expected_records is not None and request.expected_records != {
            (r.name, r.image_id) for r in resolution.all
        }:
            raise ImageChanged(
                f"image {resolution.display} changed since it was planned; nothing was removed",
                {"imageId": resolution.image_id, "reference": resolution.display},
            )
        turn = (request.namespace, resolution.image_id)
        turns = self._services.turns
        try:
            call.checkpoint()
            return await self._in_turn(call, reference, resolution, containers)
        finally:
            if progress.committed:
                turns.changed(turn)
            turns.give(turn)

    async def _resolve_in_turn(self, call: Call, reference: Reference) -> Resolution | None:
        """Resolve, then take the image's turn; read again (holding it) if another removal changed it since.

        So of racing callers in this server exactly one deletes an image and reports it, and a caller that
        removes a name decides "untag" or "delete" from the records as the previous caller left them.
        None: missing, and the caller allows that.
        """
        request, turns = call.request, self._services.turns
        since = turns.mark()
        resolution = await _resolve_or_missing(call, reference)
        for _ in range(3):
            if resolution is None:
                return None
            turn = (request.namespace, resolution.image_id)
            await turns.take(turn, request.deadline)
            if not turns.stale(turn, since):
                return resolution
            since = turns.mark()
            try:
                again = await _resolve_or_missing(call, reference)
            except BaseException:
                turns.give(turn)
                raise
            if again is not None and again.image_id == resolution.image_id:
                return again  # read while holding the turn: nobody here changed it since
            turns.give(turn)
            resolution = again
        raise ImageChanged(
            f"image {request.reference[:256]} kept changing during lookup; try again",
            {"reference": request.reference[:256]},
        )

    async def _in_turn(
        self, call: Call, reference: Reference, resolution: Resolution, containers: asyncio.Task[ContainerUsers]
    ) -> list[Item]:
        """The removal the request and the records call for: platforms, untag, or delete."""
        request, progress, policy = call.request, call.progress, self._services.policy
        try:
            if request.platforms:
                await remove_platforms(call, resolution, containers)
            else:
                by_id = isinstance(reference, IdReference) and resolution.named is None
                try:
                    decision = decide(resolution, force=request.force, by_id=by_id)
                    if request.every_name and isinstance(decision, DeleteImage):
                        decision = dataclasses.replace(decision, check_multiple=False)
                except ImageNotFound:
                    if not request.allow_missing:
                        raise
                    progress.missing = True
                    return []
                if isinstance(decision, Untag):
                    progress.action = t.ACTION_UNTAG
                    policy.check_protected(decision.records, force=request.force, display=resolution.display)
                    await untag(call, resolution, decision)
                else:
                    policy.check_protected(resolution.all, force=request.force, display=resolution.display)
                    await delete(call, resolution, decision, containers)
        except RemovalError as error:
            raise progress.incomplete(error) from None
        return progress.items


async def _resolve_or_missing(call: Call, reference: Reference) -> Resolution | None:
    try:
        return await resolve(call.store, reference)
    except ImageNotFound:
        if not call.request.allow_missing:
            raise
        return None


def _settled(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished removal's exception: it was logged already, even if its caller went away."""
    if not task.cancelled():
        task.exception()
