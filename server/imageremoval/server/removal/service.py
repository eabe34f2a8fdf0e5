"""The removal: resolve, walk, check conflicts, untag/delete, prune, release snapshots, publish events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from imageremoval.server.containerd.client import CALL_DEADLINE, ContainerdClient, Hold, quote
from imageremoval.server.containerd.event_publisher import EventPublisher
from imageremoval.server.domain.conflicts import check_conflicts
from imageremoval.server.domain.docker_rules import DeleteImage, Resolution, Untag, decide
from imageremoval.server.domain.errors import (
    AlreadyExistsInContainerd,
    Conflict,
    ImageChanged,
    ImageConflict,
    ImageNotFound,
    InvalidArgument,
    NotFoundInContainerd,
    OutcomeUnknown,
    PlatformNotFound,
    Reason,
    RemovalError,
    RemovalIncomplete,
)
from imageremoval.server.domain.model import (
    LABEL_GC_CONTENT_PREFIX,
    LABEL_GC_SNAPSHOT_PREFIX,
    LABEL_PARENT,
    ContentInfo,
    ImageRecord,
    Item,
    ItemKind,
    TaskState,
)
from imageremoval.server.domain.platforms import PlatformSpec, choose, validate_platforms
from imageremoval.server.domain.policy import ConcurrencyLimit, RemovalPolicy
from imageremoval.server.domain.references import (
    IdReference,
    Reference,
    dangling_name,
    familiar_name,
    is_dangling,
    is_digest,
    parse_reference,
    short_id,
)
from imageremoval.server.removal.answers import Key, RecentAnswers, check_request_id
from imageremoval.server.removal.container_users import ContainerUsers
from imageremoval.server.removal.content_walk import ImageContent, PlatformManifest, walk_present
from imageremoval.server.removal.newcomers import Seen, newcomers, pending_users, seen_before
from imageremoval.server.removal.outcomes import (
    LOST_ANSWER,
    SETTLE_SECONDS,
    Found,
    after_lost_create,
    after_lost_delete,
    after_lost_label_removal,
)
from imageremoval.server.removal.resolve import resolve
from imageremoval.server.removal.turns import ImageTurns
from imageremoval.server.telemetry import names as t
from imageremoval.server.telemetry.logs import removal_fields
from imageremoval.server.telemetry.metrics import RemovalMetrics, outcome_of

_log = logging.getLogger(__name__)
_MAX_METADATA_LIST = 1024  # characters of each of the untagged/deleted lists in a partial failure's metadata
_MAX_CHANGES_TEXT = 700  # characters of the changes listed in a partial failure's message (it is clipped at 1024)
_DELETE_ATTEMPTS = 3  # a delete whose answer was lost and that did not happen is sent again, this often

__all__ = ["ImageRemover", "Item", "ItemKind", "PlatformSpec", "RemovalRequest"]


@dataclass(frozen=True, slots=True)
class RemovalRequest:
    """What the caller asked for, already in domain terms."""

    reference: str
    namespace: str
    force: bool = False
    prune: bool = True
    platforms: tuple[PlatformSpec, ...] = ()
    allow_missing: bool = False
    async_gc: bool = False
    identities: tuple[str, ...] = ()  # the caller's certificate identities, for the namespace policy
    client: str = ""  # who is calling (identity or peer address), for the per-client share of slots
    deadline: float | None = None  # time.monotonic() by which the caller wants an answer
    request_id: str = ""  # AIP-155: a retry with the same ID gets the first call's answer
    validate_only: bool = False  # every check and the same items, but no change (no delete, label, event)
    # Prune execution: the (name, target) records the plan saw; any other set now is IMAGE_CHANGED.
    expected_records: frozenset[tuple[str, str]] | None = None
    every_name: bool = False  # prune by ID: several repositories are no conflict (each name goes)

    def fingerprint(self) -> tuple[object, ...]:
        """What the caller asked for, apart from who, when and the request ID."""
        return (
            self.reference,
            self.force,
            self.prune,
            self.platforms,
            self.allow_missing,
            self.async_gc,
            self.validate_only,
        )


@dataclass(slots=True)
class _Progress:
    """One call's state: what it changed so far (so a failure can say exactly that), and whether to stop."""

    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # changes that are not items, e.g. a dangling record
    action: str = t.ACTION_DELETE
    missing: bool = False
    cancelled: bool = False  # the caller went away: stop at the next phase boundary, if nothing changed yet
    committed: bool = False  # the first change has started: run to the end
    keep_content: bool = False  # records are being put back: the content's lease must not be released

    def incomplete(self, error: RemovalError) -> RemovalError:
        """A failure after a change: ABORTED with what was changed, so nobody retries it blindly.

        The lists are cut between names, never inside one; the counts are exact, and `truncated` says
        whether any list was cut (issue 9 item 5).
        """
        if not self.committed:
            return error
        if not (self.items or self.notes):
            if isinstance(error, LOST_ANSWER) and not error.verified_unchanged:  # sent, answer lost: unknown
                return OutcomeUnknown(
                    f"{error.message}; a change had been sent, so whether it happened is unknown; retry with the "
                    "same request_id or with allow_missing",
                    {k: v for k, v in error.metadata.items() if k in {"imageId", "reference", "operation"}},
                )
            return error
        untagged = [i.value for i in self.items if i.kind is ItemKind.UNTAGGED]
        deleted = [i.value for i in self.items if i.kind is ItemKind.DELETED]
        untagged_text, untagged_cut = _joined(untagged, _MAX_METADATA_LIST)
        deleted_text, deleted_cut = _joined(deleted, _MAX_METADATA_LIST)
        metadata = {
            "cause": error.reason.value,
            "untagged": untagged_text,
            "untaggedCount": str(len(untagged)),
            "deleted": deleted_text,
            "deletedCount": str(len(deleted)),
            "truncated": "true" if untagged_cut or deleted_cut else "false",
            **{k: v for k, v in error.metadata.items() if k in {"imageId", "reference", "operation"}},
        }
        changes = [f"{i.kind.value} {i.value}" for i in self.items] + self.notes
        shown, cut = _joined(changes, _MAX_CHANGES_TEXT, separator=", ")
        more = f" and {cut} more" if cut else ""
        return RemovalIncomplete(f"{error.message[:200]}; changed before the failure: {shown}{more}", metadata)


def _joined(values: Sequence[str], limit: int, *, separator: str = ",") -> tuple[str, int]:
    """As many whole values as fit in `limit` characters, and how many were left out."""
    text = ""
    for position, value in enumerate(values):
        candidate = value if not text else f"{text}{separator}{value}"
        if len(candidate) > limit:
            return text, len(values) - position
        text = candidate
    return text, 0


class ImageRemover:
    """Removes images with Docker's semantics; one instance serves every request."""

    def __init__(
        self,
        client: ContainerdClient,
        tracer: trace.Tracer,
        metrics: RemovalMetrics | None = None,
        policy: RemovalPolicy | None = None,
        *,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self._client = client
        self._tracer = tracer
        self._metrics = metrics
        self._policy = policy or RemovalPolicy()
        self._limit = ConcurrencyLimit(self._policy.max_concurrent)
        self._running: set[asyncio.Task[Any]] = set()
        self._events = EventPublisher(client, tracer)
        self._turns = ImageTurns()
        self._answers = RecentAnswers()
        self._settle_seconds = settle_seconds

    async def remove(self, request: RemovalRequest) -> list[Item]:
        """Remove one reference; every conflict is checked before the first change.

        The removal runs in a task of its own: if the caller cancels, it stops at the next phase boundary
        when nothing has changed yet, and otherwise finishes (events, log, metrics included). A call with a
        request ID already seen (same namespace and caller) gets that call's answer.
        """
        key = _answer_key(request)
        if key is not None:
            try:
                earlier = self._answers.join(key, request.fingerprint())
            except RemovalError as error:
                self._record_refusal(request, _Progress(), error, 0.0, trace.get_current_span())
                raise
            if earlier is not None:
                _log.info(
                    "request_id seen before: answering with that call's outcome",
                    extra=_log_fields(request, "replayed", 0),
                )
                return list(await asyncio.shield(earlier))
        progress = _Progress()
        task = asyncio.create_task(self._observed(request, progress))
        if key is not None:
            self._answers.track(key, request.fingerprint(), task, lambda: progress.committed)
        self._running.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._running.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            progress.cancelled = True
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

    @contextlib.contextmanager
    def _phase(self, name: str, request: RemovalRequest) -> Iterator[trace.Span]:
        # A refusal is an answer: the phase turns ERROR with the message, without a traceback event (bugs are
        # logged with theirs by _observed).
        with self._tracer.start_as_current_span(name, record_exception=False) as span:
            span.set_attribute(t.ATTR_NAMESPACE, request.namespace)
            span.set_attribute(t.ATTR_REFERENCE, request.reference[:256])
            yield span

    async def _observed(self, request: RemovalRequest, progress: _Progress) -> list[Item]:
        """The removal with its outcome recorded: server-span attributes and event, metrics, one log line."""
        start = time.perf_counter()
        span = trace.get_current_span()  # the RPC's server span
        try:
            with self._limit.slot(request.client):
                CALL_DEADLINE.set(request.deadline)
                try:
                    items = await self._remove(request, progress)
                finally:
                    # Every change gets its event, also when the call fails after changing something.
                    if not request.validate_only:
                        self._events.publish(request.namespace, request.reference, progress.items)
        except RemovalError as error:
            self._record_refusal(request, progress, error, time.perf_counter() - start, span)
            raise
        except asyncio.CancelledError:
            seconds = time.perf_counter() - start
            if self._metrics is not None:
                self._metrics.removal(action=progress.action, seconds=seconds, error=None, cancelled=True)
            what = "after changes" if progress.committed else "before any change"
            _log.info(
                "removal cancelled %s",
                what,
                extra=_log_fields(request, t.OUTCOME_CANCELLED, seconds, items=progress.items),
            )
            raise
        except Exception as exc:
            _log.exception("removal failed unexpectedly", extra=_log_fields(request, "internal", 0))
            failure = progress.incomplete(RemovalError("internal error; see the server log"))
            self._record_refusal(request, progress, failure, time.perf_counter() - start, span)
            raise failure from exc
        seconds = time.perf_counter() - start
        outcome = t.OUTCOME_MISSING if progress.missing else t.OUTCOME_SUCCESS
        if span.is_recording():
            span.set_attribute(t.ATTR_OUTCOME, outcome)
            span.set_attribute(t.ATTR_ITEMS, len(items))
        deleted = sum(1 for i in items if i.kind is ItemKind.DELETED)
        if self._metrics is not None and not request.validate_only:
            self._metrics.removal(action=progress.action, seconds=seconds, error=None, missing=progress.missing)
            self._metrics.items(request.namespace, deleted=deleted, untagged=len(items) - deleted)
        _log.info(
            "removed %s: %d untagged, %d deleted",
            request.reference[:256],
            len(items) - deleted,
            deleted,
            extra=_log_fields(request, outcome, seconds, items=items),
        )
        return items

    def _record_refusal(
        self, request: RemovalRequest, progress: _Progress, error: RemovalError, seconds: float, span: trace.Span
    ) -> None:
        outcome = outcome_of(error)
        if span.is_recording():
            metadata = {f"imageremoval.error.{k}": v for k, v in error.metadata.items()}
            span.add_event(t.EVENT_REFUSED, {t.ATTR_REASON: error.reason.value, **metadata})
            span.set_attribute(t.ATTR_REASON, error.reason.value)
            span.set_attribute(t.ATTR_OUTCOME, outcome)
        if self._metrics is not None:
            self._metrics.removal(action=progress.action, seconds=seconds, error=error)
        _log.info(
            "removal refused: %s",
            error.message,
            extra=_log_fields(request, outcome, seconds, reason=error.reason.value, items=progress.items),
        )

    def _checkpoint(self, request: RemovalRequest, progress: _Progress) -> None:
        """Between phases: stop if the caller went away or its deadline is too close (nothing changed yet)."""
        if progress.cancelled:
            raise asyncio.CancelledError
        self._policy.check_deadline(request.deadline)

    def _commit(self, request: RemovalRequest, progress: _Progress) -> None:
        """The last moment to refuse with nothing changed; from here on the removal runs to its end."""
        self._checkpoint(request, progress)
        progress.committed = True
        CALL_DEADLINE.set(None)  # containerd calls of the mutation are bounded by our own timeout only

    async def _remove(self, request: RemovalRequest, progress: _Progress) -> list[Item]:
        self._policy.check_namespace(request.namespace, request.identities)
        if request.request_id:
            check_request_id(request.request_id)
        validate_platforms(request.platforms, request.force)
        reference = parse_reference(request.reference)
        self._checkpoint(request, progress)
        # The container list does not depend on what the reference resolves to: ask for it meanwhile.
        containers = asyncio.create_task(ContainerUsers.load(self._client, request.namespace))
        try:
            return await self._resolved(request, reference, progress, containers)
        finally:
            # Let it finish rather than cancel it: a cancelled call would leave its client span unended.
            await asyncio.gather(containers, return_exceptions=True)

    async def _resolved(
        self,
        request: RemovalRequest,
        reference: Reference,
        progress: _Progress,
        containers: asyncio.Task[ContainerUsers],
    ) -> list[Item]:
        with self._phase(t.SPAN_RESOLVE, request) as span:
            found = await self._resolve_in_turn(request, reference)
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
        try:
            self._checkpoint(request, progress)
            return await self._in_turn(request, reference, resolution, progress, containers)
        finally:
            if progress.committed:
                self._turns.changed(turn)
            self._turns.give(turn)

    async def _resolve_in_turn(self, request: RemovalRequest, reference: Reference) -> Resolution | None:
        """Resolve, then take the image's turn; read again (holding it) if another removal changed it since.

        So of racing callers in this server exactly one deletes an image and reports it, and a caller that
        removes a name decides "untag" or "delete" from the records as the previous caller left them.
        None: missing, and the caller allows that.
        """
        since = self._turns.mark()
        resolution = await self._resolve_or_missing(request, reference)
        for _ in range(3):
            if resolution is None:
                return None
            turn = (request.namespace, resolution.image_id)
            await self._turns.take(turn, request.deadline)
            if not self._turns.stale(turn, since):
                return resolution
            since = self._turns.mark()
            try:
                again = await self._resolve_or_missing(request, reference)
            except BaseException:
                self._turns.give(turn)
                raise
            if again is not None and again.image_id == resolution.image_id:
                return again  # read while holding the turn: nobody here changed it since
            self._turns.give(turn)
            resolution = again
        raise ImageChanged(
            f"image {request.reference[:256]} kept changing during lookup; try again",
            {"reference": request.reference[:256]},
        )

    async def _resolve_or_missing(self, request: RemovalRequest, reference: Reference) -> Resolution | None:
        try:
            return await resolve(self._client, request.namespace, reference)
        except ImageNotFound:
            if not request.allow_missing:
                raise
            return None

    async def _in_turn(
        self,
        request: RemovalRequest,
        reference: Reference,
        resolution: Resolution,
        progress: _Progress,
        containers: asyncio.Task[ContainerUsers],
    ) -> list[Item]:
        try:
            if request.platforms:
                await self._remove_platforms(request, resolution, progress, containers)
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
                    self._policy.check_protected(decision.records, force=request.force, display=resolution.display)
                    await self._untag(request, resolution, decision, progress)
                else:
                    self._policy.check_protected(resolution.all, force=request.force, display=resolution.display)
                    await self._delete(request, resolution, decision, progress, containers)
        except RemovalError as error:
            raise progress.incomplete(error) from None
        return progress.items

    # untag only

    async def _untag(
        self, request: RemovalRequest, resolution: Resolution, decision: Untag, progress: _Progress
    ) -> None:
        with self._phase(t.SPAN_DELETE, request) as span:
            span.set_attribute(t.ATTR_ACTION, t.ACTION_UNTAG)
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            # Nothing was read since the resolve's List of the image's records, so that read is the check
            # before the first change; each delete still carries its expected target.
            self._commit(request, progress)
            # Untagging never frees content while other names remain, so no delete waits for collection.
            for record in decision.records:
                if await self._delete_record(request, record, sync=False) and not is_dangling(record.name):
                    progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))
            span.set_attribute(t.ATTR_ITEMS, len(progress.items))

    # delete the image

    async def _delete(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        decision: DeleteImage,
        progress: _Progress,
        containers: asyncio.Task[ContainerUsers],
    ) -> None:
        namespace = request.namespace
        # The image's content goes under a lease of ours (item 8) while it is walked and checked.
        # A validation changes nothing, not even a lease.
        holding = (
            None
            if request.validate_only
            else asyncio.create_task(self._client.hold(namespace, resolution.all[0].target.digest))
        )
        hold: Hold | None = None
        collect = False
        try:
            walking = asyncio.create_task(self._walk(request, resolution))
            checking = asyncio.create_task(self._check(request, resolution, decision, walking, containers))
            try:
                content = await walking
                soft_untag, parents, users, using = await checking
            except BaseException:
                for task in (walking, checking):
                    task.cancel()
                await asyncio.gather(walking, checking, return_exceptions=True)  # both retrieved: no stray warnings
                raise
            self._checkpoint(request, progress)
            with self._phase(t.SPAN_DELETE, request) as span:
                span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
                if soft_untag is not None:
                    span.set_attribute(t.ATTR_ACTION, "soft-untag")
                    progress.action = t.ACTION_UNTAG
                    await self._soft_untag(request, resolution, soft_untag, progress)
                    return
                span.set_attribute(t.ATTR_ACTION, t.ACTION_DELETE)
                hold = await holding if holding is not None else None
                collect = not request.async_gc and not parents
                before = await seen_before(self._client, namespace, users, using, content)
                if before.pending and not request.force:
                    # A root filesystem prepared on its layers, or an unpack of them: a container is coming.
                    single = dataclasses.replace(decision, check_multiple=False)
                    check_conflicts(resolution, single, pending_users(before), force=False)
                # The re-read comes last, right before the delete: on containerd 1.6, which ignores the delete's
                # expected target, a tag re-pointed after it is still deleted (item 9), so keep that short.
                current = await self._current(namespace, resolution)
                try:
                    parents = await self._delete_held(
                        request, resolution, decision, progress, content, before, current, parents
                    )
                finally:
                    if hold is not None:
                        hold.keep = progress.keep_content
        finally:
            # Released (with the one collection waited for) before parents are pruned, or once anything failed.
            if hold is None and holding is not None:
                done = (await asyncio.gather(holding, return_exceptions=True))[0]
                hold = done if isinstance(done, Hold) else None
            if hold is not None and collect:
                await self._client.release(namespace, hold, collect=True)
            elif hold is not None:  # nothing to wait for: released after the reply (drained on shutdown)
                self._later(self._client.release(namespace, hold, collect=False))
        if parents:
            with self._phase(t.SPAN_PRUNE_PARENTS, request) as span:
                pruning = time.perf_counter()
                await self._prune(request, parents, progress)
                span.set_attribute(t.ATTR_PARENTS, len(parents))
                if self._metrics is not None:
                    self._metrics.prune(time.perf_counter() - pruning)
        if not request.async_gc and not request.validate_only:
            with self._phase(t.SPAN_RELEASE_SNAPSHOTS, request) as span:
                released = await self._release_snapshots(namespace, content)
                span.set_attribute(t.ATTR_CONFIGS_RELEASED, released)

    async def _soft_untag(
        self, request: RemovalRequest, resolution: Resolution, record: ImageRecord, progress: _Progress
    ) -> None:
        """Force on the last name of an image a container uses: free the name, keep the content (as Docker's
        softImageDelete: a dangling record when no other record would hold it)."""
        current = await self._current(request.namespace, resolution)
        self._same_records(resolution, current, [record], exact=True)
        self._commit(request, progress)
        if len(resolution.all) == 1 and not request.validate_only:
            await self._create_dangling(request.namespace, record, progress)
        if await self._delete_record(request, record, sync=False):
            progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))

    async def _current(self, namespace: str, resolution: Resolution) -> list[ImageRecord]:
        """The image's records and its children's, read right before the first change."""
        return await self._client.list_images(
            namespace,
            [
                f"target.digest=={quote(resolution.image_id)}",
                f"labels.{quote(LABEL_PARENT)}=={quote(resolution.image_id)}",
            ],
        )

    async def _delete_held(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        decision: DeleteImage,
        progress: _Progress,
        content: ImageContent,
        before: Seen,
        current: Sequence[ImageRecord],
        parents: list[Resolution],
    ) -> list[Resolution]:
        """Delete the records while the content is held; put them back if a user appeared meanwhile.

        `current`: the records read right before the first change. Returns the parents still to prune (none
        when the image's content stays as a dangling record).
        """
        namespace = request.namespace
        self._same_records(resolution, current, decision.records, exact=True)
        children = [r for r in current if r.labels.get(LABEL_PARENT) == resolution.image_id]
        named = [r for r in decision.records if not is_dangling(r.name)]
        # The last names, given by name, of an image others build on: its content stays as a dangling
        # record (kept if it exists), and so do its parents, which are then not pruned. Nothing is
        # reported deleted, since a record remains. By ID the image goes, as with Docker.
        keep_dangling = bool(children and named) and decision.by_name is not None
        doomed = named if keep_dangling else list(decision.records)
        if keep_dangling:
            parents = []
            progress.action = t.ACTION_UNTAG
            trace.get_current_span().set_attribute(t.ATTR_ACTION, t.ACTION_UNTAG)
        self._commit(request, progress)
        keep = keep_dangling and not request.validate_only
        created = await self._create_dangling(namespace, named[0], progress) if keep else None
        deleted: list[ImageRecord] = []
        for record in doomed:
            if await self._delete_record(request, record, sync=False):
                deleted.append(record)
                if not is_dangling(record.name):
                    progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))
        appeared = await newcomers(
            self._client, namespace, resolution.image_id, {r.name for r in resolution.all}, content, before
        )
        if appeared:
            await self._refuse_after_delete(request, resolution, decision, progress, appeared, deleted, created)
        if not deleted:
            progress.missing = True  # someone else removed every record first
        elif not keep_dangling:
            # Only the caller whose delete removed a record reports the image deleted (item 3).
            progress.items.append(Item(ItemKind.DELETED, resolution.image_id, resolution.image_id))
        return parents

    async def _refuse_after_delete(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        decision: DeleteImage,
        progress: _Progress,
        appeared: list[tuple[str, TaskState]],
        deleted: list[ImageRecord],
        created: ImageRecord | None,
    ) -> None:
        """A user appeared while the records were gone: the same conflict rules decide; when they refuse, the
        records are put back (the content was held all along) and the call fails with nothing changed."""
        refusal: RemovalError | None = None
        try:
            soft = check_conflicts(
                resolution, dataclasses.replace(decision, check_multiple=False), appeared, force=request.force
            )
        except ImageConflict as conflict:
            refusal = conflict
        else:
            if soft is not None:  # force by name: a retry frees the name and keeps the content for it
                refusal = ImageChanged(
                    f"container {short_id(appeared[0][0])} started using image {resolution.display} during the "
                    "removal; nothing was removed; try again",
                    {"imageId": resolution.image_id, "reference": resolution.display, "container": appeared[0][0]},
                )
        if refusal is None:
            return
        progress.keep_content = True  # until the records are back, the lease must outlive us
        for record in deleted:
            with contextlib.suppress(AlreadyExistsInContainerd):
                await self._client.create_image(request.namespace, record)
        restored = {familiar_name(r.name) for r in deleted}
        progress.items = [i for i in progress.items if not (i.kind is ItemKind.UNTAGGED and i.value in restored)]
        if created is not None:
            await self._delete_record(request, created, sync=False)
            progress.notes = [n for n in progress.notes if n != f"created {created.name}"]
        progress.keep_content = False
        _log.info(
            "a user of %s appeared during the removal (%s); records restored",
            resolution.image_id,
            appeared[0][0],
        )
        raise refusal

    async def _walk(self, request: RemovalRequest, resolution: Resolution) -> ImageContent:
        """The image's present content. Never skipped: a stopped dockerd container has no container record,
        only snapshots above the image's layers, which the walk's chain IDs find."""
        with self._phase(t.SPAN_WALK, request) as span:
            content = await walk_present(self._client, request.namespace, resolution.all[0].target)
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            span.set_attribute(t.ATTR_BLOBS_WALKED, content.blob_count)
            span.set_attribute(t.ATTR_BYTES, content.size)
            return content

    async def _check(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        decision: DeleteImage,
        walking: asyncio.Task[ImageContent],
        containers: asyncio.Task[ContainerUsers],
    ) -> tuple[ImageRecord | None, list[Resolution], ContainerUsers, list[tuple[str, TaskState]]]:
        """check-conflicts: containers (listed while resolving), then the prunable parent chain."""
        with self._phase(t.SPAN_CHECK_CONFLICTS, request) as span:
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            users = await containers
            span.set_attribute(t.ATTR_CONTAINERS_CHECKED, len(users.containers))
            content = await walking
            names = {r.name for r in resolution.all}
            using = await users.users(resolution.image_id, names, content)
            soft_untag = check_conflicts(resolution, decision, using, force=request.force)
            parents = (
                [] if soft_untag or not request.prune else await self._prunable_parents(request, resolution, users)
            )
            span.set_attribute(t.ATTR_PARENTS, len(parents))
            return soft_untag, parents, users, using

    def _same_records(
        self, resolution: Resolution, current: Sequence[ImageRecord], records: Sequence[ImageRecord], *, exact: bool
    ) -> None:
        """Right before the first change: the records still point where we resolved them."""
        names = {r.name for r in current if r.image_id == resolution.image_id}
        moved = [r.name for r in records if r.name not in names]
        added = sorted(names - {r.name for r in resolution.all}) if exact else []
        if moved or added:
            changed = familiar_name((moved or added)[0])
            raise ImageChanged(
                f"image {resolution.display} changed during removal ({'moved' if moved else 'new'} reference "
                f"{changed}); nothing was removed",
                {"imageId": resolution.image_id, "reference": changed},
            )

    async def _recheck(
        self, namespace: str, resolution: Resolution, records: Sequence[ImageRecord], *, exact: bool
    ) -> None:
        current = await self._client.list_images(namespace, [f"target.digest=={quote(resolution.image_id)}"])
        self._same_records(resolution, current, records, exact=exact)

    async def _create_dangling(self, namespace: str, record: ImageRecord, progress: _Progress) -> ImageRecord | None:
        """Create the image's dangling record; the record if this call created it, None if it existed."""
        dangling = ImageRecord(name=dangling_name(record.image_id), target=record.target, labels=record.labels)
        try:
            await self._client.create_image(namespace, dangling)
        except AlreadyExistsInContainerd:
            return None  # unique per digest: whoever made it, it holds the same content
        except LOST_ANSWER as cause:
            if not await after_lost_create(self._client, namespace, dangling, cause, self._settle_seconds):
                await self._client.create_image(namespace, dangling)  # it did not happen: once more
        progress.notes.append(f"created {dangling.name}")
        return dangling

    async def _delete_record(self, request: RemovalRequest, record: ImageRecord, *, sync: bool) -> bool:
        """Delete one record (passing its target: compare-and-delete on containerd 1.7+); False if it was gone.

        When containerd stops answering after the delete was sent, the record is read again once it answers
        (item 1): gone means the delete happened; still there means it did not, and it is sent again; no
        answer in time is OUTCOME_UNKNOWN, never a retryable UNAVAILABLE.
        """
        if request.validate_only:
            return True  # the checks all ran; this is the change a validation does not make
        cause: RemovalError | None = None
        for _ in range(_DELETE_ATTEMPTS):
            try:
                await self._client.delete_image(request.namespace, record.name, record.target, sync=sync)
            except NotFoundInContainerd:
                # containerd 2.x also answers NotFound when the name now points elsewhere (its target check):
                # that name is not gone, and must not be reported as deleted.
                if request.allow_missing and not await self._still_named(request.namespace, record.name):
                    if sync:
                        await self._collect_garbage(request.namespace)  # the wait this delete would have done
                    return False  # a concurrent remover got there first: that is what we wanted
                raise ImageChanged(
                    f"image {familiar_name(record.name)} was removed or moved by someone else during removal",
                    {"imageId": record.image_id, "reference": familiar_name(record.name)},
                ) from None
            except LOST_ANSWER as lost:
                cause = lost
                found = await after_lost_delete(self._client, request.namespace, record, lost, self._settle_seconds)
                if found is Found.GONE:
                    return True
                if found is Found.MOVED:
                    raise ImageChanged(
                        f"image {familiar_name(record.name)} was moved by someone else during removal",
                        {"imageId": record.image_id, "reference": familiar_name(record.name)},
                    ) from None
                continue  # still there: the delete did not happen
            return True
        assert cause is not None
        cause.verified_unchanged = True  # read back each time: the record is still there
        raise cause

    async def _still_named(self, namespace: str, name: str) -> bool:
        try:
            await self._client.get_image(namespace, name)
        except NotFoundInContainerd:
            return False
        return True

    # parents (org.mobyproject.image.parent)

    async def _prunable_parents(
        self, request: RemovalRequest, resolution: Resolution, users: ContainerUsers
    ) -> list[Resolution]:
        """The dangling parent chain that can go with the image, decided before any change."""
        parents: list[Resolution] = []
        child_id, labels = resolution.image_id, resolution.all[0].labels
        seen = {child_id}
        while is_digest(parent_id := labels.get(LABEL_PARENT, "")) and parent_id not in seen:
            seen.add(parent_id)
            related = await self._client.list_images(
                request.namespace,
                [f"target.digest=={quote(parent_id)}", f"labels.{quote(LABEL_PARENT)}=={quote(parent_id)}"],
            )
            records = [r for r in related if r.image_id == parent_id]
            siblings = [r for r in related if r.labels.get(LABEL_PARENT) == parent_id and r.image_id != child_id]
            if not records or not all(is_dangling(r.name) for r in records) or siblings:
                break  # gone, still named, or another image builds on it: the walk stops quietly
            if not all(self._policy.may_delete(r, force=request.force) for r in records):
                break  # pinned or protected: every path that deletes a record asks the same (item 7)
            parent = Resolution(
                image_id=parent_id, found=None, all=tuple(records), named=None, display=short_id(parent_id)
            )
            content = await walk_present(self._client, request.namespace, records[0].target)
            if await users.users(parent_id, {r.name for r in records}, content):
                break  # a container uses it: quietly keep it
            parents.append(parent)
            child_id, labels = parent_id, records[0].labels
        return parents

    async def _prune(self, request: RemovalRequest, parents: list[Resolution], progress: _Progress) -> None:
        """Delete the planned parents; any failure stops the walk quietly, as Docker's prune does."""
        for position, parent in enumerate(parents):
            last = position == len(parents) - 1
            ours = False
            try:
                for index, record in enumerate(parent.all):
                    sync = last and not request.async_gc and index == len(parent.all) - 1
                    ours = await self._delete_record(request, record, sync=sync) or ours
            except OutcomeUnknown:
                raise  # not quiet: whether the parent went is unknown, and the answer must say so
            except (RemovalError, NotFoundInContainerd) as exc:
                _log.info("stopped pruning parents at %s: %s", parent.image_id, exc)
                return
            if ours:  # a concurrent prune that removed it first reports it, not this call (item 3)
                progress.items.append(Item(ItemKind.DELETED, parent.image_id, parent.image_id))
            self._turns.changed((request.namespace, parent.image_id))

    # release snapshots

    async def _release_snapshots(self, namespace: str, content: ImageContent) -> int:
        """After collection, configs still held (by a lease) but used by no image lose their snapshot
        references, and one more collection frees those snapshots. Also counts the bytes freed. Never fatal.

        Content.Info per blob, concurrently: a filtered Content.List would scan the whole content store.
        """
        configs = sorted(content.configs)
        asked = list(content.blobs) if self._metrics is not None else configs
        infos = await asyncio.gather(*(self._info(namespace, digest) for digest in asked))
        # Unknown (unreadable) blobs count as remaining: never reported as freed, never released.
        remaining = {digest: info for digest, info in zip(asked, infos, strict=True) if info is not None}
        if self._metrics is not None:
            freed = sum(size for digest, size in content.blobs.items() if digest not in remaining)
            self._metrics.reclaimed(namespace, freed)
        released = 0
        for config in (c for c in configs if c in remaining):
            snapshot_labels = {k: "" for k in remaining[config].labels if k.startswith(LABEL_GC_SNAPSHOT_PREFIX)}
            if not snapshot_labels:
                continue
            try:
                users = await self._client.list_content(
                    namespace, [f"labels.{quote(LABEL_GC_CONTENT_PREFIX + 'config')}=={quote(config)}"]
                )
                if users:
                    continue  # another manifest (so another image) still uses this config
                await self._client.update_content_labels(namespace, config, snapshot_labels)
                released += 1
            except (RemovalError, NotFoundInContainerd) as exc:
                _log.warning("release-snapshots failed for %s: %s", config, exc)
        if released:
            await self._collect_garbage(namespace)
        return released

    async def _info(self, namespace: str, digest: str) -> ContentInfo | None:
        """A blob's info; None when it is gone. Unreadable: an info without labels (kept, nothing released)."""
        try:
            return await self._client.content_info(namespace, digest)
        except NotFoundInContainerd:
            return None
        except RemovalError as exc:
            _log.warning("release-snapshots: cannot read %s: %s", digest, exc.message)
            return ContentInfo(digest=digest, size=0)

    async def _collect_garbage(self, namespace: str) -> None:
        """One synchronous collection pass (deleting a lease with sync runs one)."""
        try:
            async with self._client.temporary_lease(namespace):
                pass
        except RemovalError as exc:
            _log.warning("garbage collection failed: %s", exc.message)

    # platforms

    async def _remove_platforms(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        progress: _Progress,
        containers: asyncio.Task[ContainerUsers],
    ) -> None:
        self._policy.check_protected(resolution.all, force=request.force, display=resolution.display)
        content = await self._walk(request, resolution)
        if content.index is None:
            raise InvalidArgument(
                Reason.INVALID_PLATFORM,
                f"{resolution.display} is not a multi-platform image; remove it without platforms",
                {"imageId": resolution.image_id},
            )
        try:
            chosen = choose(content, request.platforms, display=resolution.display, image_id=resolution.image_id)
        except PlatformNotFound:
            if not request.allow_missing:
                raise
            progress.missing = True
            return
        with self._phase(t.SPAN_CHECK_CONFLICTS, request) as span:
            users = await containers
            span.set_attribute(t.ATTR_CONTAINERS_CHECKED, len(users.containers))
            using = await users.users(
                resolution.image_id,
                {r.name for r in resolution.all},
                content,
                manifests={m.descriptor.digest for m in chosen},
            )
            running = [c for c, s in using if s is TaskState.RUNNING]
            if running:
                raise ImageConflict(
                    reference=resolution.display,
                    conflict=Conflict.RUNNING_CONTAINER,
                    forceable=False,
                    image_id=resolution.image_id,
                    container=running[0],
                    detail=f"platform is being used by running container {short_id(running[0])}",
                )
        self._checkpoint(request, progress)
        await self._drop_platforms(request, resolution, content, chosen, progress)

    async def _drop_platforms(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        content: ImageContent,
        chosen: list[PlatformManifest],
        progress: _Progress,
    ) -> None:
        """Drop the index's garbage-collection references to these manifests, then collect once.

        The collector then frees exactly the blobs no other image references, which a direct
        Content.Delete could not know.
        """
        assert content.index is not None
        index = content.index.digest
        with self._phase(t.SPAN_DELETE, request) as span:
            span.set_attribute(t.ATTR_ACTION, "platforms")
            await self._recheck(request.namespace, resolution, resolution.all, exact=False)
            try:
                info = await self._client.content_info(request.namespace, index)
            except NotFoundInContainerd:
                raise ImageChanged(
                    f"the index of {resolution.display} is gone; nothing was removed",
                    {"imageId": resolution.image_id},
                ) from None
            removed = {m.descriptor.digest for m in chosen}
            labels = {k: "" for k, v in info.labels.items() if k.startswith(LABEL_GC_CONTENT_PREFIX) and v in removed}
            self._commit(request, progress)
            if labels and not request.validate_only:
                try:
                    await self._client.update_content_labels(request.namespace, index, labels)
                except LOST_ANSWER as cause:  # read back once containerd answers (item 1)
                    record = resolution.all[0]
                    if not await after_lost_label_removal(
                        self._client, request.namespace, record, labels, cause, self._settle_seconds
                    ):
                        await self._client.update_content_labels(request.namespace, index, labels)
                progress.notes.append(f"dropped {len(labels)} references of index {index}")
            if not request.async_gc and not request.validate_only:
                async with self._client.temporary_lease(request.namespace):
                    pass  # deleting the lease synchronously runs one garbage-collection pass
            progress.items.extend(Item(ItemKind.DELETED, m.descriptor.digest, resolution.image_id) for m in chosen)
            span.set_attribute(t.ATTR_ITEMS, len(progress.items))


def _answer_key(request: RemovalRequest) -> Key | None:
    """Where a call's answer is kept for retries: per namespace and caller identity; None without a valid ID."""
    if not request.request_id:
        return None
    try:
        check_request_id(request.request_id)
    except InvalidArgument:
        return None  # refused (and logged) by the removal itself
    return (request.namespace, request.identities, request.request_id)


def _settled(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished removal's exception: it was logged already, even if its caller went away."""
    if not task.cancelled():
        task.exception()


def _log_fields(
    request: RemovalRequest, outcome: str, seconds: float, *, reason: str = "", items: Sequence[Item] = ()
) -> dict[str, object]:
    """The structured fields of a removal's log line (names and IDs removed included); user input is clipped."""
    return removal_fields(request.namespace, request.reference, outcome, seconds, reason=reason, items=items)
