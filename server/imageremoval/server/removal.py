"""The removal: resolve, walk, check conflicts, untag/delete, prune, release snapshots, publish events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from . import telemetry as t
from .conflicts import check_conflicts
from .containerd import CALL_DEADLINE, ContainerdClient, quote
from .errors import (
    AlreadyExistsInContainerd,
    Conflict,
    ImageChanged,
    ImageConflict,
    ImageNotFound,
    InvalidArgument,
    NotFoundInContainerd,
    PlatformNotFound,
    Reason,
    RemovalError,
    RemovalIncomplete,
)
from .events import EventPublisher
from .logs import removal_fields
from .metrics import RemovalMetrics
from .model import (
    LABEL_GC_CONTENT_PREFIX,
    LABEL_GC_SNAPSHOT_PREFIX,
    LABEL_PARENT,
    ContentInfo,
    ImageRecord,
    Item,
    ItemKind,
    TaskState,
)
from .plan import DeleteImage, Resolution, Untag, decide
from .platforms import PlatformSpec, choose, validate_platforms
from .policy import ConcurrencyLimit, RemovalPolicy
from .references import (
    IdReference,
    Reference,
    dangling_name,
    familiar_name,
    is_dangling,
    is_digest,
    parse_reference,
    short_id,
)
from .resolve import resolve
from .users import ContainerUsers
from .walk import ImageContent, PlatformManifest, walk_present

_log = logging.getLogger(__name__)
_MAX_METADATA_LIST = 1024  # characters of untagged/deleted lists in a partial-failure's metadata

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
    validate_only: bool = False  # every check and the same items, but no change (no delete, label, event)
    # Prune execution: the (name, target) records the plan saw; any other set now is IMAGE_CHANGED.
    expected_records: frozenset[tuple[str, str]] | None = None
    every_name: bool = False  # prune by ID: several repositories are no conflict (each name goes)


@dataclass(slots=True)
class _Progress:
    """One call's state: what it changed so far (so a failure can say exactly that), and whether to stop."""

    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # changes that are not items, e.g. a dangling record
    action: str = t.ACTION_DELETE
    missing: bool = False
    cancelled: bool = False  # the caller went away: stop at the next phase boundary, if nothing changed yet
    committed: bool = False  # the first change has started: run to the end

    def incomplete(self, error: RemovalError) -> RemovalError:
        """A failure after a change: ABORTED with what was changed, so nobody retries it blindly."""
        if not self.committed or not (self.items or self.notes):
            return error
        changes = [f"{i.kind.value} {i.value}" for i in self.items] + self.notes
        metadata = {
            "cause": error.reason.value,
            "untagged": ",".join(i.value for i in self.items if i.kind is ItemKind.UNTAGGED)[:_MAX_METADATA_LIST],
            "deleted": ",".join(i.value for i in self.items if i.kind is ItemKind.DELETED)[:_MAX_METADATA_LIST],
            **{k: v for k, v in error.metadata.items() if k in {"imageId", "reference", "operation"}},
        }
        return RemovalIncomplete(f"{error.message}; changed before the failure: {', '.join(changes)}"[:2048], metadata)


class ImageRemover:
    """Removes images with Docker's semantics; one instance serves every request."""

    def __init__(
        self,
        client: ContainerdClient,
        tracer: trace.Tracer,
        metrics: RemovalMetrics | None = None,
        policy: RemovalPolicy | None = None,
    ) -> None:
        self._client = client
        self._tracer = tracer
        self._metrics = metrics
        self._policy = policy or RemovalPolicy()
        self._limit = ConcurrencyLimit(self._policy.max_concurrent)
        self._running: set[asyncio.Task[Any]] = set()
        self._events = EventPublisher(client, tracer)

    async def remove(self, request: RemovalRequest) -> list[Item]:
        """Remove one reference; every conflict is checked before the first change.

        The removal runs in a task of its own: if the caller cancels, it stops at the next phase boundary
        when nothing has changed yet, and otherwise finishes (events, log, metrics included).
        """
        progress = _Progress()
        task = asyncio.create_task(self._observed(request, progress))
        self._running.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._running.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            progress.cancelled = True
            raise

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
        outcome = error.kind.value.lower()
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
            try:
                resolution = await resolve(self._client, request.namespace, reference)
            except ImageNotFound:
                if not request.allow_missing:
                    raise
                span.set_attribute(t.ATTR_OUTCOME, t.OUTCOME_MISSING)
                progress.missing = True
                return []
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            span.set_attribute(t.ATTR_REFERENCES, len(resolution.all))
        if request.expected_records is not None and request.expected_records != {
            (r.name, r.image_id) for r in resolution.all
        }:
            raise ImageChanged(
                f"image {resolution.display} changed since it was planned; nothing was removed",
                {"imageId": resolution.image_id, "reference": resolution.display},
            )
        self._checkpoint(request, progress)
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
            # before the first change (B5); each delete still carries its expected target.
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
        walking = asyncio.create_task(self._walk(request, resolution))
        checking = asyncio.create_task(self._check(request, resolution, decision, walking, containers))
        try:
            content = await walking
            soft_untag, parents = await checking
            containers_seen = bool(containers.result().containers)
        except BaseException:
            for task in (walking, checking):
                task.cancel()
            await asyncio.gather(walking, checking, return_exceptions=True)  # both retrieved: no stray warnings
            raise
        self._checkpoint(request, progress)
        with self._phase(t.SPAN_DELETE, request) as span:
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            if resolution.children is not None and not content.walked and not parents and not containers_seen:
                # Nothing was read since resolving (no walk, no container, no parent chain): that read is as
                # recent as a re-read would be, so it serves as the check before the first change (B5).
                current = [*resolution.all, *resolution.children]
            else:
                current = await self._client.list_images(
                    namespace,
                    [
                        f"target.digest=={quote(resolution.image_id)}",
                        f"labels.{quote(LABEL_PARENT)}=={quote(resolution.image_id)}",
                    ],
                )
            if soft_untag is not None:
                # Force on the last name of an image a container uses: free the name, keep the content (as
                # Docker's softImageDelete: a dangling record when no other record would hold it).
                span.set_attribute(t.ATTR_ACTION, "soft-untag")
                progress.action = t.ACTION_UNTAG
                self._same_records(resolution, current, [soft_untag], exact=True)
                self._commit(request, progress)
                if len(resolution.all) == 1 and not request.validate_only:
                    await self._create_dangling(namespace, soft_untag, progress)
                if await self._delete_record(request, soft_untag, sync=False):
                    progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(soft_untag.name), soft_untag.image_id))
                return
            span.set_attribute(t.ATTR_ACTION, t.ACTION_DELETE)
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
                span.set_attribute(t.ATTR_ACTION, t.ACTION_UNTAG)
            self._commit(request, progress)
            if keep_dangling and not request.validate_only:
                await self._create_dangling(namespace, named[0], progress)
            wait_last = not request.async_gc and not parents
            for position, record in enumerate(doomed):
                sync = wait_last and position == len(doomed) - 1
                if await self._delete_record(request, record, sync=sync) and not is_dangling(record.name):
                    progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))
            if not keep_dangling:
                progress.items.append(Item(ItemKind.DELETED, resolution.image_id, resolution.image_id))
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
    ) -> tuple[ImageRecord | None, list[Resolution]]:
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
            return soft_untag, parents

    def _same_records(
        self, resolution: Resolution, current: Sequence[ImageRecord], records: Sequence[ImageRecord], *, exact: bool
    ) -> None:
        """Right before the first change: the records still point where we resolved them (B5)."""
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

    async def _create_dangling(self, namespace: str, record: ImageRecord, progress: _Progress) -> None:
        dangling = ImageRecord(name=dangling_name(record.image_id), target=record.target, labels=record.labels)
        try:
            await self._client.create_image(namespace, dangling)
        except AlreadyExistsInContainerd:
            return  # unique per digest: whoever made it, it holds the same content
        progress.notes.append(f"created {dangling.name}")

    async def _delete_record(self, request: RemovalRequest, record: ImageRecord, *, sync: bool) -> bool:
        """Delete one record (passing its target: compare-and-delete on containerd 1.7+); False if it was gone."""
        if request.validate_only:
            return True  # the checks all ran; this is the change a validation does not make
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
        return True

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
            try:
                for index, record in enumerate(parent.all):
                    sync = last and not request.async_gc and index == len(parent.all) - 1
                    await self._delete_record(request, record, sync=sync)
            except (RemovalError, NotFoundInContainerd) as exc:
                _log.info("stopped pruning parents at %s: %s", parent.image_id, exc)
                return
            progress.items.append(Item(ItemKind.DELETED, parent.image_id, parent.image_id))

    # release snapshots (A6)

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

    # platforms (A5, B3)

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

        The collector then frees exactly the blobs no other image references (B3), which a direct
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
                await self._client.update_content_labels(request.namespace, index, labels)
                progress.notes.append(f"dropped {len(labels)} references of index {index}")
            if not request.async_gc and not request.validate_only:
                async with self._client.temporary_lease(request.namespace):
                    pass  # deleting the lease synchronously runs one garbage-collection pass
            progress.items.extend(Item(ItemKind.DELETED, m.descriptor.digest, resolution.image_id) for m in chosen)
            span.set_attribute(t.ATTR_ITEMS, len(progress.items))


def _settled(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished removal's exception: it was logged already, even if its caller went away."""
    if not task.cancelled():
        task.exception()


def _log_fields(
    request: RemovalRequest, outcome: str, seconds: float, *, reason: str = "", items: Sequence[Item] = ()
) -> dict[str, object]:
    """The structured fields of a removal's log line (names and IDs removed included); user input is clipped."""
    return removal_fields(request.namespace, request.reference, outcome, seconds, reason=reason, items=items)
