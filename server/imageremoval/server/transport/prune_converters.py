"""Protobuf <-> domain converters for listing and pruning, including the plan's signature."""

from __future__ import annotations

import base64
import binascii

from google.protobuf import timestamp_pb2

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.server.cleaning.plan_seal import PlanSeal
from imageremoval.server.cleaning.prune_execution import ExecutablePlan, PlannedRemoval, Progress, Removed, Skip
from imageremoval.server.cleaning.prune_plan import PrunePlan, Skipped, SkipReason
from imageremoval.server.cleaning.space_reclaim import ReclaimPlanned, ReclaimRemoved, ReclaimSkip, ReclaimStep
from imageremoval.server.domain.errors import InvalidArgument, Reason
from imageremoval.server.domain.images import InventoryImage
from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.domain.selector import LabelMatch, Selector
from imageremoval.server.domain.sizes import parse_node
from imageremoval.server.domain.usage import AgeBasis

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_SKIP: dict[SkipReason, pb.SkipReason] = {
    reason: pb.SkipReason.Value(f"SKIP_REASON_{reason.value}")  # type: ignore[misc]
    for reason in SkipReason
}


_BASIS: dict[AgeBasis, pb.AgeBasis] = {
    basis: pb.AgeBasis.Value(f"AGE_BASIS_{basis.value}")  # type: ignore[misc]
    for basis in AgeBasis
}


def _stamp(nanoseconds: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(nanoseconds)
    return stamp


def to_selector(message: pb.ImageSelector) -> Selector:
    """The wire selector, validated (INVALID_SELECTOR)."""
    selector = Selector(
        all_unused=message.all_unused,
        created_before_ns=message.created_before.ToNanoseconds() if message.HasField("created_before") else None,
        labels=tuple(LabelMatch(m.key, m.value, m.negate) for m in message.labels),
        references=tuple(message.references),
        keep_latest=message.keep_latest_per_repository,
        unused_for_ns=message.unused_for.ToNanoseconds() if message.HasField("unused_for") else None,
    )
    selector.validate()
    return selector


def page_size(requested: int) -> int:
    """0 means the default; more than the maximum is the maximum; negative is INVALID_ARGUMENT."""
    if requested < 0:
        raise InvalidArgument(Reason.INVALID_PAGE_TOKEN, "page_size must not be negative", {"pageSize": str(requested)})
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(image: InventoryImage) -> str:
    """Where the next page starts: after this image in newest-first order."""
    return base64.urlsafe_b64encode(f"{image.created_ns}|{image.id}".encode()).decode()


def decode_token(token: str) -> tuple[int, str] | None:
    """(created, ID) of the last image of the previous page; INVALID_PAGE_TOKEN when garbled."""
    if not token:
        return None
    try:
        created, _, image_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return int(created), image_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(Reason.INVALID_PAGE_TOKEN, "page_token is not one this server returned") from None


def to_image(image: InventoryImage) -> pb.Image:
    return pb.Image(
        id=image.id,
        names=list(image.names),
        created=_stamp(image.created_ns),
        dangling=image.dangling,
        labels=dict(image.labels),
        platforms=[pb.Platform(os=p.os, architecture=p.architecture, variant=p.variant) for p in image.platforms],
        running_containers=image.running,
        stopped_containers=image.stopped,
        protected=bool(image.protected_rule),
        protected_rule=image.protected_rule,
        content_bytes=image.sizes.content_bytes,
        snapshot_bytes=image.sizes.snapshot_bytes,
        unique_bytes=image.sizes.unique_bytes,
        first_seen=_stamp(image.usage.first_seen_ns) if image.usage.first_seen_ns is not None else None,
        last_used=_stamp(image.usage.last_used_ns) if image.usage.last_used_ns is not None else None,
        age_basis=_BASIS[image.usage.basis],
    )


def _skipped(skipped: Skipped) -> pb.SkippedImage:
    return pb.SkippedImage(image=to_image(skipped.image), reason=_SKIP[skipped.reason], detail=skipped.detail)


def _payload(plan: pb.PrunePlan) -> bytes:
    unsigned = pb.PrunePlan()
    unsigned.CopyFrom(plan)
    unsigned.ClearField("signature")
    return unsigned.SerializeToString(deterministic=True)


def to_plan(plan: PrunePlan, selector: pb.ImageSelector, seal: PlanSeal) -> pb.PrunePlan:
    """The plan as the API shows it, with what it saw and its signature."""
    message = pb.PrunePlan(
        namespace=plan.namespace,
        images=[
            pb.PlannedImage(
                image=to_image(p.image),
                reason=p.reason,
                records=[pb.PlannedRecord(name=r.name, target=r.image_id) for r in p.image.records],
            )
            for p in plan.images
        ],
        skipped=[_skipped(s) for s in plan.skipped],
        reclaimable_bytes=plan.reclaimable_bytes,
        created=_stamp(plan.created_ns),
        selector=selector,
        key_id=seal.key_id,
    )
    for resource in plan.resources:
        blob, snapshotter, key = parse_node(resource.node)
        message.resources.add(
            blob=blob, snapshotter=snapshotter, snapshot=key, bytes=resource.size, images=list(resource.holders)
        )
    message.signature = seal.sign(_payload(message))
    return message


def from_plan(message: pb.PrunePlan, seal: PlanSeal) -> ExecutablePlan:
    """A plan this server (or a replica with the same key) made and nobody changed; else INVALID_PLAN."""
    if not message.signature or not seal.verify(_payload(message), message.signature):
        other = f" (signed with key {message.key_id[:16]}, this server has {seal.key_id})" if message.key_id else ""
        raise InvalidArgument(
            Reason.INVALID_PLAN,
            f"the plan is not one this server signed, or it was changed{other}",
            {"keyId": message.key_id[:16], "serverKeyId": seal.key_id},
        )
    count = len(message.images)
    resources = []
    for r in message.resources:
        node = f"c|{r.blob}" if r.blob else f"s|{r.snapshotter}|{r.snapshot}"
        resources.append((node, r.bytes, tuple(i for i in r.images if 0 <= i < count)))
    return ExecutablePlan(
        namespace=message.namespace,
        removals=tuple(
            PlannedRemoval(image_id=p.image.id, records=frozenset((r.name, r.target) for r in p.records))
            for p in message.images
        ),
        resources=tuple(resources),
    )


def _items(items: tuple[Item, ...]) -> list[pb.RemovedItem]:
    return [
        pb.RemovedItem(untagged=i.value) if i.kind is ItemKind.UNTAGGED else pb.RemovedItem(deleted=i.value)
        for i in items
    ]


def to_progress(progress: Progress, plan: pb.PrunePlan) -> pb.PruneProgress:
    """One streamed step; skipped and removed images are shown as the plan saw them."""
    if isinstance(progress, Removed):
        image_id = plan.images[progress.index].image.id
        return pb.PruneProgress(removed=pb.RemovedImage(image_id=image_id, items=_items(progress.items)))
    if isinstance(progress, Skip):
        return pb.PruneProgress(
            skipped=pb.SkippedImage(
                image=plan.images[progress.index].image, reason=_SKIP[progress.reason], detail=progress.detail
            )
        )
    return pb.PruneProgress(
        summary=pb.PruneSummary(
            images_removed=progress.removed,
            images_skipped=progress.skipped,
            planned_bytes=progress.planned_bytes,
            freed_bytes=progress.freed_bytes,
        )
    )


def reclaim_progress(step: ReclaimStep) -> pb.PruneProgress:
    """One ReclaimSpace step on the wire."""
    if isinstance(step, ReclaimSkip):
        return pb.PruneProgress(
            skipped=pb.SkippedImage(image=to_image(step.image), reason=_SKIP[step.reason], detail=step.detail)
        )
    if isinstance(step, ReclaimPlanned):
        image = step.planned.image
        return pb.PruneProgress(
            planned=pb.PlannedImage(
                image=to_image(image),
                reason="least recently used",
                records=[pb.PlannedRecord(name=r.name, target=r.image_id) for r in image.records],
            )
        )
    if isinstance(step, ReclaimRemoved):
        return pb.PruneProgress(removed=pb.RemovedImage(image_id=step.image_id, items=_items(step.items)))
    return pb.PruneProgress(
        summary=pb.PruneSummary(
            images_removed=step.removed,
            images_skipped=step.skipped,
            planned_bytes=step.planned_bytes,
            freed_bytes=step.freed_bytes,
            target_bytes=step.target_bytes,
            stop_reason=step.stop_reason,
            usage_percent_before=step.before.percent if step.before else 0.0,
            usage_percent_after=step.after.percent if step.after else 0.0,
        )
    )
