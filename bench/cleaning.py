"""Scenario 7 (issue 14): ListImages with exact sizes at scale, and prune against containerd's own deletes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from imageremoval.client import ImageRemovalClient
from imageremoval.gen.containerd.services.images.v1 import images_pb2
from imageremoval.gen.v1 import image_removal_pb2 as pb

from .content import Own, over_shared_base, unique_manifest
from .env import BenchError
from .stats import Goal, Row, Target, details, summarize
from .variants import RawImages

if TYPE_CHECKING:
    from .scenarios import Context


def _dangling(ctx: Context, ns: str, count: int, label: str) -> list[str]:
    """`count` dangling images over one shared base (each its own manifest); their record names."""
    base = unique_manifest(f"{ctx.factory.tag()}-s7-{label}-base")
    ctx.factory.put(ns, [(f"docker.io/bench/s7-{label}-base:latest", base)])
    manifests = [over_shared_base(ctx.factory.tag(), base) for _ in range(count)]
    images = ctx.factory.put(ns, [(f"moby-dangling@{m.blob.digest}", m) for m in manifests], own=Own.MANIFEST)
    return [image.name for image in images]


def _list_ms(client: ImageRemovalClient, ns: str, times: int) -> tuple[list[float], int]:
    """Milliseconds of one ListImages call of a 1,000-image page (every call sizes the whole namespace)."""
    samples: list[float] = []
    count = 0
    for _ in range(times):
        started = time.perf_counter()
        page = client.list_page(pb.ListImagesRequest(namespace=ns, page_size=1000))
        samples.append((time.perf_counter() - started) * 1000)
        count = len(page.images)
    return samples, count


def scenario_7(ctx: Context) -> list[Row]:
    """ListImages over N images (cold: first read of every config; warm), and PlanPrune + ExecutePrune of
    1,000 dangling images against 1,000 raw Images.Delete plus one synchronous collection."""
    plan = ctx.plan
    rows: list[Row] = []
    with ImageRemovalClient(ctx.server.target, timeout=600) as client:
        # Listing at each scale level; a fresh server process per level, so "cold" means no cache.
        ns = ctx.namespace("s7-list")
        base = unique_manifest(f"{ctx.factory.tag()}-s7-list-base")
        ctx.factory.put(ns, [("docker.io/bench/s7-list-base:latest", base)])
        created = 1
        for level in plan.cleaning_list_levels:
            more = [over_shared_base(ctx.factory.tag(), base) for _ in range(level - created)]
            names = [f"docker.io/bench/s7-list-{created + i}:latest" for i in range(len(more))]
            ctx.factory.put(ns, list(zip(names, more, strict=True)), own=Own.MANIFEST)
            created = level
            with (
                ctx.server.like(ctx.work_dir / f"server-s7-{level}.log") as fresh,
                ImageRemovalClient(fresh.target, timeout=600) as cold_client,
            ):
                cold, _ = _list_ms(cold_client, ns, 1)
                warm, count = _list_ms(cold_client, ns, plan.cleaning_list_rounds)
            if count != min(level, 1000):
                raise BenchError(f"ListImages returned {count} images of {level}")
            ctx.log(
                f"scenario 7: ListImages over {level:,} images: cold {cold[0]:.0f} ms, warm p50 "
                f"{summarize(warm).p50:.0f} ms"
            )
            warm_summary = summarize(warm)
            rows.append(
                Row(
                    7,
                    f"ListImages (exact unique bytes) over {level:,} images, warm: p50",
                    "ms",
                    warm_summary.p50,
                    target=Target(Goal.VALUE_AT_MOST, 1000) if level >= 10_000 else None,
                    note=f"cold (first call of a new server: every config read once) {cold[0]:.0f} ms; "
                    "one call sizes the whole namespace whatever the page size",
                    detail=details({"warm": warm_summary}),
                )
            )
        ctx.factory.clear([ns])

        # Prune of dangling images, ours against containerd's own deletes, alternating which goes first.
        raw = RawImages(ctx.address)
        ours_s: list[float] = []
        raw_s: list[float] = []
        freed_ok = True
        try:
            for round_ in range(plan.cleaning_prune_rounds):
                for side in ("ours", "raw") if round_ % 2 == 0 else ("raw", "ours"):
                    ns = ctx.namespace(f"s7-prune-{side}-{round_}")
                    names = _dangling(ctx, ns, plan.cleaning_prune_images, f"{side}{round_}")
                    started = time.perf_counter()
                    if side == "ours":
                        made = client.plan_prune(namespace=ns)
                        progress = list(client.execute_prune(made))
                        ours_s.append(time.perf_counter() - started)
                        summary = progress[-1].summary
                        if summary.images_removed != len(names):
                            raise BenchError(f"prune removed {summary.images_removed} of {len(names)}")
                        freed_ok = freed_ok and summary.freed_bytes == made.reclaimable_bytes
                    else:
                        for name in names:
                            raw.images.Delete(
                                images_pb2.DeleteImageRequest(name=name, sync=False),
                                metadata=(("containerd-namespace", ns),),
                            )
                        ctx.factory.collect_garbage(ns)
                        raw_s.append(time.perf_counter() - started)
                    ctx.log(
                        f"scenario 7: prune {side} round {round_ + 1}: {(ours_s if side == 'ours' else raw_s)[-1]:.2f}s"
                    )
        finally:
            raw.close()
    ours_summary, raw_summary = summarize(ours_s), summarize(raw_s)
    rows.append(
        Row(
            7,
            f"PlanPrune + ExecutePrune of {plan.cleaning_prune_images:,} dangling images (one collection)",
            "s",
            ours_summary.p50,
            {"raw Delete(sync=false) x N + one sync collection": raw_summary.p50},
            target=Target(Goal.RATIO_AT_MOST, 1.2),
            note="freed_bytes (measured) equalled the plan's reclaimable_bytes in every round"
            if freed_ok
            else "freed_bytes differed from the plan's reclaimable_bytes in a round",
            detail=details({"ours": ours_summary, "raw": raw_summary}),
        )
    )
    return rows
