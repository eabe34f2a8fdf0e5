"""The removal: resolve, walk, check conflicts, untag/delete, prune, release snapshots, publish events."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace

from . import telemetry as t
from .containerd import CALL_DEADLINE, ContainerdClient
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
)
from .metrics import RemovalMetrics
from .model import LABEL_GC_CONTENT_PREFIX, LABEL_GC_SNAPSHOT_PREFIX, LABEL_PARENT, Descriptor, ImageRecord, TaskState
from .plan import DeleteImage, Resolution, Untag, decide
from .policy import ConcurrencyLimit, RemovalPolicy
from .references import (
    IdReference,
    NameReference,
    Reference,
    dangling_name,
    familiar_name,
    is_dangling,
    parse_reference,
    short_id,
)
from .walk import ImageContent, PlatformManifest, walk_present

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_RESOLVE_ATTEMPTS = 3
_PLATFORM_PART = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_MAX_PLATFORMS = 64
_NAME_FILTER_CHUNK = 64


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """One platform to remove: os/architecture[/variant]."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


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
    deadline: float | None = None  # time.monotonic() by which the caller wants an answer


class ItemKind(enum.Enum):
    """Docker's two kinds of delete-response item."""

    UNTAGGED = "untagged"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Item:
    """One thing the removal did, in order."""

    kind: ItemKind
    value: str
    image_id: str  # the image the name pointed to (for events)


@dataclass(slots=True)
class _Progress:
    """What has been changed so far, so a failure can say exactly what it changed."""

    items: list[Item] = field(default_factory=list)
    action: str = t.ACTION_DELETE
    missing: bool = False

    def annotate(self, error: RemovalError) -> RemovalError:
        if self.items:
            error.metadata["untagged"] = ",".join(i.value for i in self.items if i.kind is ItemKind.UNTAGGED)
            error.metadata["deleted"] = ",".join(i.value for i in self.items if i.kind is ItemKind.DELETED)
            error.message += (
                " (changed before the failure: " + ", ".join(f"{i.kind.value} {i.value}" for i in self.items) + ")"
            )
            error.args = (error.message,)
        return error


def _variant(architecture: str, variant: str) -> str:
    """containerd's platform normalisation for the variants that have a default."""
    if architecture == "arm64" and variant in {"", "v8"}:
        return "v8"
    if architecture == "arm" and variant == "":
        return "v7"
    return variant


def platform_matches(spec: PlatformSpec, platform: dict[str, str] | object) -> bool:
    """Strict match of a manifest's platform against the requested one."""
    if not isinstance(platform, dict):
        return False
    return (
        platform.get("os", "") == spec.os
        and platform.get("architecture", "") == spec.architecture
        and _variant(spec.architecture, platform.get("variant", "")) == _variant(spec.architecture, spec.variant)
    )


def validate_platforms(platforms: Sequence[PlatformSpec], force: bool) -> None:
    """Platform-selective removal needs force and well-formed platforms."""
    if not platforms:
        return
    if len(platforms) > _MAX_PLATFORMS:
        raise InvalidArgument(Reason.INVALID_PLATFORM, f"at most {_MAX_PLATFORMS} platforms per call")
    for spec in platforms:
        parts = [spec.os, spec.architecture] + ([spec.variant] if spec.variant else [])
        if not all(_PLATFORM_PART.fullmatch(part) for part in parts):
            raise InvalidArgument(
                Reason.INVALID_PLATFORM,
                f"invalid platform: expected os/architecture[/variant] in lowercase, got {str(spec)[:100]!r}",
            )
    if not force:
        raise InvalidArgument(
            Reason.FORCE_REQUIRED,
            "removing specific platforms requires force: their content may be shared with other images",
            {"platforms": ",".join(str(p) for p in platforms)},
        )


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
        self._background: set[asyncio.Task[Any]] = set()

    async def drain(self, seconds: float) -> None:
        """Wait for mutations that outlived their call (cancelled or past the deadline) to finish."""
        pending = [task for task in self._background if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=seconds)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _mutate(self, request: RemovalRequest, work: Coroutine[Any, Any, _T]) -> _T:
        """Run a mutation to its end, even if the caller cancels or its deadline passes: never half-done."""
        try:
            self._policy.check_deadline(request.deadline)  # the last moment to refuse with nothing changed
        except RemovalError:
            work.close()
            raise

        async def unbounded() -> _T:
            CALL_DEADLINE.set(None)
            return await work

        task = asyncio.create_task(unbounded())
        self._keep(task)
        return await asyncio.shield(task)

    @contextlib.contextmanager
    def _phase(self, name: str, request: RemovalRequest) -> Iterator[trace.Span]:
        with self._tracer.start_as_current_span(name) as span:
            span.set_attribute(t.ATTR_NAMESPACE, request.namespace)
            span.set_attribute(t.ATTR_REFERENCE, request.reference[:256])
            yield span

    async def remove(self, request: RemovalRequest) -> list[Item]:
        """Remove one reference; every conflict is checked before the first change."""
        start = time.perf_counter()
        progress = _Progress()
        span = trace.get_current_span()  # the RPC's server span
        try:
            with self._limit:
                CALL_DEADLINE.set(request.deadline)
                items = await self._remove(request, progress)
        except RemovalError as error:
            seconds = time.perf_counter() - start
            span.add_event(
                t.EVENT_REFUSED,
                {
                    t.ATTR_REASON: error.reason.value,
                    **{f"imageremoval.error.{k}": v for k, v in error.metadata.items()},
                },
            )
            span.set_attribute(t.ATTR_REASON, error.reason.value)
            span.set_attribute(t.ATTR_OUTCOME, error.kind.value.lower())
            if self._metrics is not None:
                self._metrics.removal(action=progress.action, seconds=seconds, error=error)
            _log.info(
                "removal refused: %s",
                error.message,
                extra=_log_fields(request, error.kind.value.lower(), seconds, reason=error.reason.value),
            )
            raise
        seconds = time.perf_counter() - start
        outcome = t.OUTCOME_MISSING if progress.missing else t.OUTCOME_SUCCESS
        span.set_attribute(t.ATTR_OUTCOME, outcome)
        span.set_attribute(t.ATTR_ITEMS, len(items))
        deleted = sum(1 for i in items if i.kind is ItemKind.DELETED)
        if self._metrics is not None:
            self._metrics.removal(action=progress.action, seconds=seconds, error=None, missing=progress.missing)
            self._metrics.items(request.namespace, deleted=deleted, untagged=len(items) - deleted)
        _log.info(
            "removed %s: %d untagged, %d deleted",
            request.reference[:256],
            len(items) - deleted,
            deleted,
            extra=_log_fields(request, outcome, seconds, items=len(items)),
        )
        return items

    async def _remove(self, request: RemovalRequest, progress: _Progress) -> list[Item]:
        self._policy.check_namespace(request.namespace, request.identities)
        validate_platforms(request.platforms, request.force)
        reference = parse_reference(request.reference)
        self._policy.check_deadline(request.deadline)
        with self._phase(t.SPAN_RESOLVE, request) as span:
            try:
                resolution = await self._resolve(request.namespace, reference)
            except ImageNotFound:
                if request.allow_missing:
                    span.set_attribute(t.ATTR_OUTCOME, t.OUTCOME_MISSING)
                    progress.missing = True
                    return []
                raise
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            span.set_attribute(t.ATTR_REFERENCES, len(resolution.all))
        self._policy.check_protected(resolution.all, force=request.force, display=resolution.display)
        if request.platforms:
            return await self._remove_platforms(request, resolution)
        by_id = isinstance(reference, IdReference) and resolution.named is None
        try:
            decision = decide(resolution, force=request.force, by_id=by_id)
        except ImageNotFound:
            if request.allow_missing:
                progress.missing = True
                return []
            raise
        try:
            if isinstance(decision, Untag):
                progress.action = t.ACTION_UNTAG
                await self._mutate(request, self._untag(request, resolution, decision, progress))
            else:
                await self._delete(request, resolution, decision, progress)
        except RemovalError as error:
            raise progress.annotate(error) from None
        with self._phase(t.SPAN_EVENTS, request) as span:
            await self._publish(request.namespace, progress.items)
            span.set_attribute(t.ATTR_EVENTS, len(progress.items))
        return progress.items

    # resolve

    async def _resolve(self, namespace: str, reference: Reference) -> Resolution:
        for _ in range(_RESOLVE_ATTEMPTS):
            resolution = await self._resolve_once(namespace, reference)
            if resolution is not None:
                return resolution
        raise ImageChanged(
            f"image {reference_text(reference)} changed during lookup; try again",
            {"reference": reference_text(reference)},
        )

    async def _resolve_once(self, namespace: str, reference: Reference) -> Resolution | None:
        """One consistent lookup; None when the store changed between our two reads."""
        found: ImageRecord | None = None
        named: NameReference | None = None
        if isinstance(reference, IdReference):
            display = reference.text
            full = reference.full_digest
            if full is not None:
                try:
                    found = await self._client.get_image(namespace, full)
                    digest = found.target.digest
                except NotFoundInContainerd:
                    digest = full
            else:
                pattern = f"^sha256:{reference.hex}[0-9a-f]{{{64 - len(reference.hex)}}}$"
                candidates = await self._client.list_images(
                    namespace, [f'name=="{reference.lookalike_name}"', f'target.digest~="{pattern}"']
                )
                if not candidates:
                    raise ImageNotFound(display)
                exact = [c for c in candidates if c.name == reference.lookalike_name]
                if exact:
                    # A name that merely looks like an ID wins over a prefix match.
                    found = exact[0]
                    digest = found.target.digest
                    if not digest.removeprefix("sha256:").startswith(reference.hex):
                        named = NameReference(found.name.rsplit(":", 1)[0], "latest", None)
                else:
                    targets = sorted({c.target.digest for c in candidates})
                    if len(targets) > 1:
                        raise InvalidArgument(
                            Reason.AMBIGUOUS_REFERENCE,
                            f"ambiguous reference: {display} matches {len(targets)} images",
                            {"reference": display, "candidates": ",".join(short_id(d) for d in targets[:10])},
                        )
                    digest = targets[0]
        else:
            named = reference
            display = reference.familiar
            try:
                found = await self._client.get_image(namespace, reference.name)
                digest = found.target.digest
            except NotFoundInContainerd:
                if reference.digest is None:
                    raise ImageNotFound(display) from None
                digest = reference.digest
        records = await self._client.list_images(namespace, [f"target.digest=={digest}"])
        if not records:
            if found is None:
                raise ImageNotFound(display)
            return None
        if found is not None and all(r.name != found.name for r in records):
            return None
        return Resolution(image_id=digest, found=found, all=tuple(records), named=named, display=display)

    # untag only

    async def _untag(
        self, request: RemovalRequest, resolution: Resolution, decision: Untag, progress: _Progress
    ) -> None:
        with self._phase(t.SPAN_DELETE, request) as span:
            span.set_attribute(t.ATTR_ACTION, "untag")
            span.set_attribute(t.ATTR_IMAGE_ID, resolution.image_id)
            await self._recheck(request.namespace, resolution, decision.records, exact=False)
            # Untagging never frees content while other names remain, so no delete waits for collection.
            for record in decision.records:
                await self._delete_record(request.namespace, record, sync=False)
                if not is_dangling(record.name):
                    progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), record.image_id))
            span.set_attribute(t.ATTR_ITEMS, len(progress.items))

    # delete the image

    async def _delete(
        self, request: RemovalRequest, resolution: Resolution, decision: DeleteImage, progress: _Progress
    ) -> None:
        namespace = request.namespace
        image_id = resolution.image_id
        target = resolution.all[0].target
        with self._phase(t.SPAN_WALK, request) as span:
            content = await walk_present(self._client, namespace, target)
            span.set_attribute(t.ATTR_IMAGE_ID, image_id)
            span.set_attribute(t.ATTR_BLOBS_WALKED, content.blob_count)
            span.set_attribute(t.ATTR_BYTES, content.size)
        with self._phase(t.SPAN_CHECK_CONFLICTS, request) as span:
            span.set_attribute(t.ATTR_IMAGE_ID, image_id)
            users, checked = await self._container_users(namespace, resolution, content)
            span.set_attribute(t.ATTR_CONTAINERS_CHECKED, checked)
            soft_untag = self._check_conflicts(request, resolution, decision, users)
            children, parents = await asyncio.gather(
                self._children(namespace, image_id),
                self._prunable_parents(namespace, resolution) if request.prune else _no_parents(),
            )
            span.set_attribute(t.ATTR_PARENTS, len(parents))
        await self._mutate(
            request,
            self._apply_delete(request, resolution, decision, progress, content, soft_untag, bool(children), parents),
        )

    async def _apply_delete(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        decision: DeleteImage,
        progress: _Progress,
        content: ImageContent,
        soft_untag: ImageRecord | None,
        has_children: bool,
        parents: list[Resolution],
    ) -> None:
        """Everything that changes the store, in order; runs to its end once started."""
        namespace = request.namespace
        image_id = resolution.image_id
        with self._phase(t.SPAN_DELETE, request) as span:
            span.set_attribute(t.ATTR_IMAGE_ID, image_id)
            if soft_untag is not None:
                span.set_attribute(t.ATTR_ACTION, "soft-untag")
                progress.action = t.ACTION_UNTAG
                await self._soft_untag(request, resolution, soft_untag, progress)
                return
            span.set_attribute(t.ATTR_ACTION, "delete")
            await self._recheck(namespace, resolution, decision.records, exact=True)
            named = [r for r in decision.records if not is_dangling(r.name)]
            if has_children and named:
                # The last name of an image other images build on: keep its content as a dangling record.
                await self._create_dangling(namespace, named[0])
            last_sync = not request.async_gc and not parents
            for position, record in enumerate(decision.records):
                sync = last_sync and position == len(decision.records) - 1
                await self._delete_record(namespace, record, sync=sync)
                if not is_dangling(record.name):
                    progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(record.name), image_id))
            progress.items.append(Item(ItemKind.DELETED, image_id, image_id))
        if parents:
            with self._phase(t.SPAN_PRUNE_PARENTS, request) as span:
                pruning = time.perf_counter()
                await self._prune(request, parents, progress)
                span.set_attribute(t.ATTR_PARENTS, len(parents))
                if self._metrics is not None:
                    self._metrics.prune(time.perf_counter() - pruning)
        if not request.async_gc:
            self._account_reclaimed(namespace, content)
            with self._phase(t.SPAN_RELEASE_SNAPSHOTS, request) as span:
                released = await self._release_snapshots(namespace, content)
                span.set_attribute(t.ATTR_CONFIGS_RELEASED, released)
                if released:
                    await self._collect_garbage(namespace)

    def _check_conflicts(
        self,
        request: RemovalRequest,
        resolution: Resolution,
        decision: DeleteImage,
        users: list[tuple[str, TaskState]],
    ) -> ImageRecord | None:
        """Raise the first conflict Docker would; returns the record to soft-untag when force allows it."""
        image_id = resolution.image_id
        if decision.by_name is not None:
            if not users:
                return None
            container, state = users[0]
            if not request.force:
                reference = familiar_name(decision.by_name.name)
                raise ImageConflict(
                    reference=reference,
                    conflict=Conflict.RUNNING_CONTAINER if state is TaskState.RUNNING else Conflict.STOPPED_CONTAINER,
                    forceable=True,
                    image_id=image_id,
                    container=container,
                    detail=f"container {short_id(container)} is using its referenced image {short_id(image_id)}",
                )
            return decision.by_name
        reference = short_id(image_id)
        running = [c for c, s in users if s is TaskState.RUNNING]
        if running:
            raise ImageConflict(
                reference=reference,
                conflict=Conflict.RUNNING_CONTAINER,
                forceable=False,
                image_id=image_id,
                container=running[0],
                detail=f"image is being used by running container {short_id(running[0])}",
            )
        if decision.check_stopped and users:
            raise ImageConflict(
                reference=reference,
                conflict=Conflict.STOPPED_CONTAINER,
                forceable=True,
                image_id=image_id,
                container=users[0][0],
                detail=f"image is being used by stopped container {short_id(users[0][0])}",
            )
        if decision.check_multiple and len(decision.records) > 1:
            raise ImageConflict(
                reference=reference,
                conflict=Conflict.MULTIPLE_REFERENCES,
                forceable=True,
                image_id=image_id,
                detail="image is referenced in multiple repositories",
            )
        return None

    async def _soft_untag(
        self, request: RemovalRequest, resolution: Resolution, record: ImageRecord, progress: _Progress
    ) -> None:
        """Force on a name a container uses: keep the content as a dangling record, then drop the names."""
        namespace = request.namespace
        named = [r for r in resolution.all if not is_dangling(r.name)]
        await self._recheck(namespace, resolution, named, exact=False)
        await self._create_dangling(namespace, record)
        for position, each in enumerate(named):
            await self._delete_record(namespace, each, sync=False)
            del position
            progress.items.append(Item(ItemKind.UNTAGGED, familiar_name(each.name), resolution.image_id))

    async def _create_dangling(self, namespace: str, record: ImageRecord) -> None:
        dangling = ImageRecord(name=dangling_name(record.image_id), target=record.target, labels=record.labels)
        with contextlib.suppress(AlreadyExistsInContainerd):
            await self._client.create_image(namespace, dangling)

    async def _recheck(
        self, namespace: str, resolution: Resolution, records: Sequence[ImageRecord], *, exact: bool
    ) -> None:
        """Right before the first change: the records still point where we resolved them (B5)."""
        current = await self._client.list_images(namespace, [f"target.digest=={resolution.image_id}"])
        names = {r.name for r in current}
        moved = [r.name for r in records if r.name not in names]
        added = sorted(names - {r.name for r in resolution.all}) if exact else []
        if moved or added:
            changed = moved or added
            raise ImageChanged(
                f"image {resolution.display} changed during removal ({'moved' if moved else 'new'} "
                f"reference {familiar_name(changed[0])}); nothing was removed",
                {"imageId": resolution.image_id, "reference": familiar_name(changed[0])},
            )

    async def _delete_record(self, namespace: str, record: ImageRecord, *, sync: bool) -> None:
        try:
            await self._client.delete_image(namespace, record.name, record.target, sync=sync)
        except NotFoundInContainerd:
            raise ImageChanged(
                f"image {familiar_name(record.name)} was removed or moved by someone else during removal",
                {"imageId": record.image_id, "reference": familiar_name(record.name)},
            ) from None

    def _account_reclaimed(self, namespace: str, content: ImageContent) -> None:
        """Count the bytes the collection freed, off the request's path (it only feeds a metric)."""
        if self._metrics is None or len(self._background) > 64:
            return
        self._keep(asyncio.create_task(self._measure_reclaimed(namespace, content)))

    async def _measure_reclaimed(self, namespace: str, content: ImageContent) -> None:
        blobs = {b.digest: b.size for m in content.manifests for b in (m.descriptor, *m.blobs)}
        if content.index is not None:
            blobs[content.index.digest] = content.index.size

        async def gone(digest: str) -> bool:
            try:
                await self._client.content_info(namespace, digest)
            except NotFoundInContainerd:
                return True
            except RemovalError:
                return False
            return False

        found = await asyncio.gather(*(gone(d) for d in blobs))
        if self._metrics is not None:
            self._metrics.reclaimed(
                namespace, sum(size for (_, size), g in zip(blobs.items(), found, strict=True) if g)
            )

    # conflicts with containers

    async def _container_users(
        self, namespace: str, resolution: Resolution, content: ImageContent
    ) -> tuple[list[tuple[str, TaskState]], int]:
        """Containers using the image: their image name resolves to its digest, or their rootfs sits on it."""
        containers = await self._client.list_containers(namespace)
        if not containers:
            return [], 0
        own_names = {r.name for r in resolution.all}
        unknown = sorted({c.image for c in containers if c.image and c.image not in own_names})
        targets: dict[str, str] = {}
        for start in range(0, len(unknown), _NAME_FILTER_CHUNK):
            chunk = unknown[start : start + _NAME_FILTER_CHUNK]
            for record in await self._client.list_images(namespace, [f'name=="{name}"' for name in chunk]):
                targets[record.name] = record.target.digest
        users = [c for c in containers if c.image in own_names or targets.get(c.image) == resolution.image_id]
        # A container whose image name is gone (untagged, retagged) is matched by its snapshot lineage.
        orphans = [c for c in containers if c.image not in own_names and c.image not in targets and c.snapshot_key]
        if orphans and content.chain_ids:
            parents = await asyncio.gather(
                *(self._snapshot_parent(namespace, c.snapshotter, c.snapshot_key) for c in orphans)
            )
            users.extend(c for c, parent in zip(orphans, parents, strict=True) if parent in content.chain_ids)
        if not users:
            return [], len(containers)
        states = await self._client.task_states(namespace)
        found = [(c.id, states.get(c.id, TaskState.STOPPED)) for c in users]
        # Running first: that is the conflict force cannot override, so it is the one to report.
        found.sort(key=lambda pair: pair[1] is not TaskState.RUNNING)
        return found, len(containers)

    async def _snapshot_parent(self, namespace: str, snapshotter: str, key: str) -> str:
        try:
            return await self._client.snapshot_parent(namespace, snapshotter or "overlayfs", key)
        except NotFoundInContainerd:
            return ""

    # parents and children (org.mobyproject.image.parent)

    async def _children(self, namespace: str, image_id: str) -> list[ImageRecord]:
        return await self._client.list_images(namespace, [f'labels."{LABEL_PARENT}"=="{image_id}"'])

    async def _prunable_parents(self, namespace: str, resolution: Resolution) -> list[Resolution]:
        """The dangling parent chain that can go with the image, decided before any change."""
        parents: list[Resolution] = []
        child_id = resolution.image_id
        labels = resolution.all[0].labels
        seen = {child_id}
        while (parent_id := labels.get(LABEL_PARENT, "")) and parent_id not in seen:
            seen.add(parent_id)
            records = await self._client.list_images(namespace, [f"target.digest=={parent_id}"])
            if not records or not all(is_dangling(r.name) for r in records):
                break  # gone already, or still named: the walk stops quietly
            siblings = [c for c in await self._children(namespace, parent_id) if c.image_id != child_id]
            if siblings:
                break  # another image still builds on it
            parent = Resolution(
                image_id=parent_id, found=None, all=tuple(records), named=None, display=short_id(parent_id)
            )
            content = await walk_present(self._client, namespace, records[0].target)
            users, _ = await self._container_users(namespace, parent, content)
            if users:
                break  # a container uses it: quietly keep it
            parents.append(parent)
            child_id, labels = parent_id, records[0].labels
        return parents

    async def _prune(self, request: RemovalRequest, parents: list[Resolution], progress: _Progress) -> None:
        for position, parent in enumerate(parents):
            last = position == len(parents) - 1
            try:
                for index, record in enumerate(parent.all):
                    sync = last and not request.async_gc and index == len(parent.all) - 1
                    await self._delete_record(request.namespace, record, sync=sync)
            except (ImageChanged, NotFoundInContainerd) as exc:
                _log.info("stopped pruning parents", extra={"imageId": parent.image_id, "error": str(exc)})
                return
            progress.items.append(Item(ItemKind.DELETED, parent.image_id, parent.image_id))

    # release snapshots (A6)

    async def _release_snapshots(self, namespace: str, content: ImageContent) -> int:
        """Configs still held (by a lease) but used by no image: drop their snapshot references."""
        released = 0
        for config in sorted(content.configs):
            try:
                info = await self._client.content_info(namespace, config)
            except NotFoundInContainerd:
                continue  # collected with the image: nothing to release
            except RemovalError as exc:
                _log.warning("release-snapshots: %s", exc.message)
                continue
            snapshot_labels = {k: "" for k in info.labels if k.startswith(LABEL_GC_SNAPSHOT_PREFIX)}
            if not snapshot_labels:
                continue
            try:
                users = await self._client.list_content(
                    namespace, [f'labels."{LABEL_GC_CONTENT_PREFIX}config"=={config}']
                )
                if users:
                    continue  # another manifest (so another image) still uses this config
                await self._client.update_content_labels(namespace, config, snapshot_labels)
                released += 1
            except (RemovalError, NotFoundInContainerd) as exc:
                _log.warning("release-snapshots failed for %s: %s", config, exc)
        return released

    async def _collect_garbage(self, namespace: str) -> None:
        """One more collection pass, so released snapshots are freed before the call returns."""
        try:
            async with self._client.temporary_lease(namespace):
                pass  # deleting the lease synchronously runs the pass
        except RemovalError as exc:
            _log.warning("release-snapshots: garbage collection failed: %s", exc.message)

    # platforms (A5, B3)

    async def _remove_platforms(self, request: RemovalRequest, resolution: Resolution) -> list[Item]:
        namespace = request.namespace
        target = resolution.all[0].target
        with self._phase(t.SPAN_WALK, request) as span:
            content = await walk_present(self._client, namespace, target)
            span.set_attribute(t.ATTR_BLOBS_WALKED, content.blob_count)
        if content.index is None:
            raise InvalidArgument(
                Reason.INVALID_PLATFORM,
                f"{resolution.display} is not a multi-platform image; remove it without platforms",
                {"imageId": resolution.image_id},
            )
        chosen: list[PlatformManifest] = []
        for spec in request.platforms:
            match = next((m for m in content.manifests if platform_matches(spec, dict(m.platform))), None)
            if match is None:
                raise PlatformNotFound(resolution.display, str(spec), resolution.image_id)
            if match not in chosen:
                chosen.append(match)
        with self._phase(t.SPAN_CHECK_CONFLICTS, request) as span:
            platform_content = ImageContent(index=content.index, manifests=chosen)
            users, checked = await self._container_users(namespace, resolution, platform_content)
            span.set_attribute(t.ATTR_CONTAINERS_CHECKED, checked)
            running = [c for c, s in users if s is TaskState.RUNNING]
            if running:
                raise ImageConflict(
                    reference=resolution.display,
                    conflict=Conflict.RUNNING_CONTAINER,
                    forceable=False,
                    image_id=resolution.image_id,
                    container=running[0],
                    detail=f"platform is being used by running container {short_id(running[0])}",
                )
        items = await self._mutate(request, self._drop_platforms(request, resolution, content.index, chosen))
        with self._phase(t.SPAN_EVENTS, request):
            await self._publish(namespace, items)
        return items

    async def _drop_platforms(
        self, request: RemovalRequest, resolution: Resolution, index: Descriptor, chosen: list[PlatformManifest]
    ) -> list[Item]:
        """Drop the index's garbage-collection references to these manifests, then collect once.

        The collector then frees exactly the blobs no other image references (B3), which a direct
        Content.Delete could not know.
        """
        with self._phase(t.SPAN_DELETE, request) as span:
            span.set_attribute(t.ATTR_ACTION, "platforms")
            await self._recheck(request.namespace, resolution, resolution.all, exact=False)
            info = await self._client.content_info(request.namespace, index.digest)
            removed = {m.descriptor.digest for m in chosen}
            labels = {k: "" for k, v in info.labels.items() if k.startswith(LABEL_GC_CONTENT_PREFIX) and v in removed}
            if labels:
                await self._client.update_content_labels(request.namespace, index.digest, labels)
            if not request.async_gc:
                async with self._client.temporary_lease(request.namespace):
                    pass  # deleting the lease synchronously runs one garbage-collection pass
            items = [Item(ItemKind.DELETED, m.descriptor.digest, resolution.image_id) for m in chosen]
            span.set_attribute(t.ATTR_ITEMS, len(items))
        return items

    # events (A7)

    async def _publish(self, namespace: str, items: Sequence[Item]) -> None:
        """One event per item, in order; a failed publish is logged, never turned into a failed removal."""
        for item in items:
            try:
                if item.kind is ItemKind.UNTAGGED:
                    await self._client.publish_untag(namespace, item.image_id, item.value)
                else:
                    await self._client.publish_delete(namespace, item.value)
            except RemovalError as exc:
                _log.warning("event not published: %s", exc.message)


def _log_fields(
    request: RemovalRequest, outcome: str, seconds: float, *, reason: str = "", items: int = 0
) -> dict[str, object]:
    """The structured fields of a removal's log line; user input is clipped."""
    return {
        "namespace": request.namespace[:80],
        "reference": request.reference[:256],
        "outcome": outcome,
        "reason": reason,
        "items": items,
        "duration_ms": round(seconds * 1000, 3),
    }


async def _no_parents() -> list[Resolution]:
    return []


def reference_text(reference: Reference) -> str:
    """How a parsed reference is shown in messages."""
    return reference.text if isinstance(reference, IdReference) else reference.familiar
