"""The CLI's commands: `rm` (docker rmi), `ls` (docker images) and `prune` (docker image prune, with a plan)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from google.protobuf import json_format

from imageremoval.gen.v1 import image_removal_pb2 as pb

from ._cli_filters import parse_filters
from ._cli_format import describe_error, human_size, is_local, short, since
from ._client import ImageRemovalClient
from ._errors import ImageRemovalError
from ._model import RemovedItem

_SKIP_WORDS = {
    pb.SKIP_REASON_IN_USE: "in use",
    pb.SKIP_REASON_PROTECTED: "protected",
    pb.SKIP_REASON_KEPT: "kept",
    pb.SKIP_REASON_PARENT_OF_KEPT: "parent of a kept image",
    pb.SKIP_REASON_CHANGED: "changed since planning",
    pb.SKIP_REASON_FAILED: "failed",
}


def _error_json(error: ImageRemovalError) -> dict[str, Any]:
    return {"code": error.code, "reason": error.reason, "message": error.message, "metadata": error.metadata}


# rm


_Outcome = tuple[list[RemovedItem], int] | ImageRemovalError


def _remove_one(client: ImageRemovalClient, args: argparse.Namespace, image: str, wait_for_gc: bool) -> _Outcome:
    try:
        return client.remove_measured(
            image,
            namespace=args.namespace,
            force=args.force,
            no_prune=args.no_prune,
            platforms=args.platforms,
            allow_missing=args.allow_missing,
            async_gc=not wait_for_gc,
            validate_only=args.dry_run,
        )
    except ImageRemovalError as error:
        return error


def _outcomes(client: ImageRemovalClient, args: argparse.Namespace) -> Iterator[tuple[str, _Outcome]]:
    """Each image's outcome in argument order. With --parallel N, up to N removals are in flight; the last one,
    which alone waits for garbage collection, starts once all the others have answered."""
    images: list[str] = args.images
    last = len(images) - 1
    parallel = max(1, args.parallel)
    if parallel == 1 or last == 0:
        for position, image in enumerate(images):
            yield image, _remove_one(client, args, image, position == last and not args.async_gc)
        return
    with ThreadPoolExecutor(parallel) as pool:
        running = [pool.submit(_remove_one, client, args, image, False) for image in images[:last]]
        for image, future in zip(images, running, strict=False):
            yield image, future.result()
    yield images[last], _remove_one(client, args, images[last], not args.async_gc)


def run_rm(client: ImageRemovalClient, args: argparse.Namespace) -> int:
    """Remove each image (in turn, or --parallel at a time); one garbage collection for the whole command (only
    the last call waits)."""
    failed = False
    results: list[dict[str, Any]] = []
    total = 0
    for image, outcome in _outcomes(client, args):
        if isinstance(outcome, ImageRemovalError):
            error = outcome
            # As the docker CLI: with -f a missing image (or platform) is reported but is not a failure.
            if not (args.force and error.code == "NOT_FOUND" and not is_local(error)):
                failed = True
            if args.format == "json":
                results.append({"image": image, "error": _error_json(error)})
            else:
                sys.stdout.flush()
                print(describe_error(error, args.server, args.timeout), file=sys.stderr, flush=True)
            continue
        items, freed = outcome
        total += freed
        if args.format == "json":
            results.append({"image": image, "items": [{i.kind: i.value} for i in items], "reclaimableBytes": freed})
            continue
        for item in items:
            if args.dry_run:
                print(f"Would {'untag' if item.kind == 'untagged' else 'delete'}: {item.value}", flush=True)
            else:
                print(item, flush=True)
        if getattr(items, "truncated", False):
            listed = sum(1 for i in items if i.kind == "untagged")
            print(
                f"note: {getattr(items, 'untagged_count', listed) - listed} more names were untagged "
                "(the server cut the list to fit its message limit)",
                file=sys.stderr,
                flush=True,
            )
    if args.format == "json":
        print(json.dumps(results, indent=2))
    elif args.dry_run:
        print(f"Total reclaimable space: {human_size(total)}")
    return 1 if failed else 0


# ls


def _rows(image: pb.Image) -> list[tuple[str, str]]:
    """(REPOSITORY, TAG) per name; `<none>` for what a name lacks, one row for a dangling image."""
    rows: list[tuple[str, str]] = []
    for name in image.names:
        base = name.split("@", 1)[0]
        slash, colon = base.rfind("/"), base.rfind(":")
        if colon > slash:
            rows.append((base[:colon], base[colon + 1 :]))
        else:
            rows.append((base, "<none>"))
    return rows or [("<none>", "<none>")]


def _table(lines: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns padded like docker's tabwriter (three spaces between)."""
    widths = [max(len(row[c]) for row in lines) for c in range(len(lines[0]))]
    for row in lines:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def run_ls(client: ImageRemovalClient, args: argparse.Namespace) -> int:
    """`docker images` columns plus UNIQUE (what removing it alone frees) and CONTAINERS."""
    filters = parse_filters(args.filter)
    selector = filters.selector(all_unused=True) if filters.narrows else None
    try:
        images = client.list_images(namespace=args.namespace, selector=selector)
    except ImageRemovalError as error:
        print(describe_error(error, args.server, args.timeout), file=sys.stderr)
        return 1
    if filters.dangling is False:
        images = [i for i in images if not i.dangling]
    if args.format == "json":
        print(json.dumps([json_format.MessageToDict(i, preserving_proto_field_name=True) for i in images], indent=2))
        return 0
    if args.quiet:
        for image in images:
            for _ in _rows(image):
                print(short(image.id, no_trunc=args.no_trunc))
        return 0
    lines = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "UNIQUE", "CONTAINERS")]
    for image in images:
        for repository, tag in _rows(image):
            lines.append(
                (
                    repository,
                    tag,
                    short(image.id, no_trunc=args.no_trunc),
                    since(image.created.ToNanoseconds()),
                    human_size(image.content_bytes + image.snapshot_bytes),
                    human_size(image.unique_bytes),
                    str(image.running_containers + image.stopped_containers),
                )
            )
    _table(lines, sys.stdout)
    return 0


# prune


def _names(image: pb.Image) -> str:
    return ", ".join(image.names) or "<none>"


def _print_plan(plan: pb.PrunePlan) -> None:
    if plan.images:
        print(f"Will remove {len(plan.images)} image{'s' if len(plan.images) != 1 else ''}:")
        lines = [("IMAGE ID", "NAMES", "SIZE", "UNIQUE", "WHY")]
        for planned in plan.images:
            image = planned.image
            size = human_size(image.content_bytes + image.snapshot_bytes)
            lines.append((short(image.id), _names(image), size, human_size(image.unique_bytes), planned.reason))
        _table(lines, sys.stdout)
    else:
        print("Nothing to remove.")
    if plan.skipped:
        print(f"Will keep {len(plan.skipped)} image{'s' if len(plan.skipped) != 1 else ''}:")
        kept = [("IMAGE ID", "NAMES", "WHY")]
        kept.extend(
            (short(s.image.id), _names(s.image), f"{_SKIP_WORDS.get(s.reason, 'kept')}: {s.detail}")
            for s in plan.skipped
        )
        _table(kept, sys.stdout)


def _confirm() -> bool:
    print("Are you sure you want to continue? [y/N] ", end="", flush=True)
    try:
        answer = input()
    except EOFError:
        print()
        return False
    return answer.strip().lower() in {"y", "yes"}


def _bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'=' * filled}{' ' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def run_prune(client: ImageRemovalClient, args: argparse.Namespace) -> int:
    """Plan, show, confirm, then execute exactly the plan shown; the reclaimed total is measured."""
    filters = parse_filters(args.filter)
    selector = filters.selector(all_unused=args.all, keep=args.keep)
    try:
        plan = client.plan_prune(namespace=args.namespace, selector=selector)
    except ImageRemovalError as error:
        print(describe_error(error, args.server, args.timeout), file=sys.stderr)
        return 1
    _print_plan(plan)
    if args.dry_run:
        print(f"Total reclaimable space: {human_size(plan.reclaimable_bytes)}")
        return 0
    if not plan.images:
        print("Total reclaimed space: 0B")
        return 0
    if not args.force and not _confirm():
        return 0
    terminal = sys.stderr.isatty()
    lines: list[str] = ["Deleted Images:"]
    failed = False
    done = 0
    summary: pb.PruneSummary | None = None
    if not terminal:
        print(lines[0], flush=True)
    try:
        for step in client.execute_prune(plan, timeout=None):
            kind = step.WhichOneof("progress")
            new: list[str] = []
            if kind == "removed":
                new = [
                    f"{item.WhichOneof('item')}: {getattr(item, item.WhichOneof('item') or '')}"
                    for item in step.removed.items
                ]
            elif kind == "skipped":
                failed = failed or step.skipped.reason == pb.SKIP_REASON_FAILED
                reason = _SKIP_WORDS.get(step.skipped.reason, "skipped")
                new = [f"skipped: {short(step.skipped.image.id)} ({reason}): {step.skipped.detail}"]
            elif kind == "summary":
                summary = step.summary
                continue
            done += 1
            if terminal:
                lines.extend(new)
                _bar(done, len(plan.images))
            else:
                for line in new:
                    print(line, flush=True)
    except ImageRemovalError as error:
        if terminal:
            sys.stderr.write("\n")
        print(describe_error(error, args.server, args.timeout), file=sys.stderr)
        return 1
    if terminal:
        sys.stderr.write("\n")
        print("\n".join(lines))
    print(f"Total reclaimed space: {human_size(summary.freed_bytes if summary else 0)}")
    return 1 if failed or summary is None else 0
