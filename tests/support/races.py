"""Bounded race loops against the real containerd that count outcomes (issue 9); shared by tests and bench."""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import threading
import time
from collections.abc import Callable, Sequence

import grpc

from imageremoval.client import ImageRemovalClient, ImageRemovalError
from imageremoval.gen.containerd.services.images.v1 import images_pb2
from imageremoval.gen.containerd.types import descriptor_pb2

from .ctr import Ctr
from .images import Layer, Manifest, file_layer, manifest
from .store import Store

Counts = collections.Counter[str]

# A removal that answered this and left the record in place, or the other way round, told a lie.
VIOLATION = "violation"
# Answers that tell a caller nothing was removed (so retrying, or concluding "not there", is right).
_SAYS_NOTHING_CHANGED = ("UNAVAILABLE:", "NOT_FOUND:", "ABORTED:IMAGE_CHANGED", "RESOURCE_EXHAUSTED:", "NO-ANSWER")


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except ImageRemovalError as error:
        return f"{error.code}:{error.reason}"
    return "OK"


def _sleep_ms(ms: float) -> None:
    if ms > 0:
        time.sleep(ms / 1000)


def ctr_run_race(
    client: ImageRemovalClient, store: Store, ctr: Ctr, namespace: str, busybox: Layer, *, trials: int
) -> Counts:
    """Issue 9 item 8: `ctr run -d` racing a removal without force, the removal started 0..150 ms later.

    A violation: the task runs, the removal answered OK, and the running container's image record or its
    blobs are gone.
    """
    counts: Counts = collections.Counter()
    for trial in range(trials):
        image = manifest((busybox,), note=f"ctr-run-{trial}")
        name = f"docker.io/library/runrace{trial}:latest"
        store.put(namespace, [name], image)
        container = f"race{trial}"
        offset = (trial * 37) % 150  # spread over ctr's start-up, its Get, Prepare and container create
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            started = pool.submit(ctr, namespace, "run", "-d", name, container, "/bin/sleep", "600", check=False)
            _sleep_ms(offset)
            removed = pool.submit(_outcome, functools.partial(client.remove, name, namespace=namespace))
            ran, answer = started.result().returncode == 0, removed.result()
        running = ran and ctr.task_status(namespace, container) == "RUNNING"
        recorded = store.target(namespace, name) is not None
        present = recorded and store.all_present(namespace, image)
        if running and not present:
            counts[VIOLATION] += 1
            counts[f"violation: record {'kept, content lost' if recorded else 'gone'} at offset {offset} ms"] += 1
        counts[f"ctr={'ran' if running else 'failed'} removal={answer}"] += 1
        ctr.cleanup(namespace)
        if store.target(namespace, name) is not None:
            store.delete_record(namespace, name)
    return counts


def _update(store: Store, namespace: str, name: str, target: Manifest) -> bool:
    """Re-point a name in one call (Images.Update): True if the name existed and now points at target."""
    image = images_pb2.Image(
        name=name,
        target=descriptor_pb2.Descriptor(
            media_type=target.blob.media_type, digest=target.blob.digest, size=target.blob.size
        ),
    )
    try:
        store.images.Update(images_pb2.UpdateImageRequest(image=image), metadata=store.md(namespace))
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def retag_race(client: ImageRemovalClient, store: Store, namespace: str, *, trials: int) -> Counts:
    """Issue 9 item 9: a racer re-points the tag being removed 0..12 ms into the call.

    A violation: the racer's re-point succeeded, yet the name is gone afterwards (the removal deleted a tag
    that no longer named the image it resolved).
    """
    counts: Counts = collections.Counter()
    other = manifest((file_layer("o", b"other"),), note="retag-other")
    store.put(namespace, ["docker.io/library/keep-other:latest"], other)
    for trial in range(trials):
        image = manifest((file_layer("r", f"retag-{trial}".encode()),), note=f"retag-{trial}")
        name = f"docker.io/library/retag{trial}:latest"
        store.put(namespace, [name], image)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            removed = pool.submit(_outcome, functools.partial(client.remove, name, namespace=namespace))
            _sleep_ms(trial % 13)
            repointed = pool.submit(_update, store, namespace, name, other).result()
            answer = removed.result()
        after = store.target(namespace, name)
        if repointed and after is None:
            counts[VIOLATION] += 1
        counts[f"repointed={repointed} removal={answer}"] += 1
        if after is not None:
            store.delete_record(namespace, name)
    return counts


def pull_end_race(client: ImageRemovalClient, store: Store, namespace: str, *, trials: int) -> Counts:
    """Issue 9 item 9: the end of a pull (new content under a lease, then the name re-pointed to it) racing
    a removal of the old image by that name. A violation: the pull finished, yet its image is gone."""
    counts: Counts = collections.Counter()
    for trial in range(trials):
        old = manifest((file_layer("p", f"old-{trial}".encode()),), note=f"old-{trial}")
        new = manifest((file_layer("p", f"new-{trial}".encode()),), note=f"new-{trial}")
        name = f"docker.io/library/pulled{trial}:latest"
        store.put(namespace, [name], old)
        with store.lease(namespace) as lease:
            store.write_manifest(namespace, new, lease)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                removed = pool.submit(_outcome, functools.partial(client.remove, name, namespace=namespace))
                _sleep_ms(trial % 13)
                pulled = pool.submit(_update, store, namespace, name, new).result()
                if not pulled:  # removed first: the pull creates the name afresh
                    store.create_record(namespace, name, new.blob)
                    pulled = True
                answer = removed.result()
        lost = store.target(namespace, name) != new.blob.digest or not store.all_present(namespace, new)
        if lost:
            counts[VIOLATION] += 1
        counts[f"removal={answer} pulled-image={'lost' if lost else 'kept'}"] += 1
        if store.target(namespace, name) is not None:
            store.delete_record(namespace, name)
    return counts


def concurrent_id_race(
    target: str, store: Store, namespace: str, *, trials: int, callers: int = 16, images: int = 8
) -> Counts:
    """Issue 9 item 3: `callers` concurrent `allow_missing` removals by ID of each of `images` images.

    A violation: an image gone with no caller reporting `Deleted`, or more than one caller reporting it.
    """
    counts: Counts = collections.Counter()
    clients = [ImageRemovalClient(target) for _ in range(4)]
    try:
        for trial in range(trials):
            ids = [
                store.put(namespace, [f"docker.io/library/cid{trial}-{i}:latest"], _small(f"cid-{trial}-{i}"))
                for i in range(images)
            ]
            jobs = [(image_id, clients[n % len(clients)]) for image_id in ids for n in range(callers // images or 1)]
            jobs += [(ids[n % images], clients[n % len(clients)]) for n in range(max(callers - len(jobs), 0))]
            reports = _race_removals(jobs, namespace, allow_missing=True)
            _judge(counts, store, namespace, ids, reports)
    finally:
        for c in clients:
            c.close()
    return counts


def concurrent_names_race(target: str, store: Store, namespace: str, *, trials: int, callers: int = 16) -> Counts:
    """Issue 9 item 3: `callers` concurrent removals of one image by its names, ID, short ID and name@digest."""
    counts: Counts = collections.Counter()
    clients = [ImageRemovalClient(target) for _ in range(4)]
    try:
        for trial in range(trials):
            repo = f"docker.io/library/mix{trial}"
            names = [f"{repo}:a", f"{repo}:b", f"{repo}:c", f"docker.io/library/mixother{trial}:a"]
            image_id = store.put(namespace, names, _small(f"mix-{trial}"))
            shapes = [
                f"mix{trial}:a",
                f"mix{trial}:b",
                f"mix{trial}:c",
                f"mixother{trial}:a",
                image_id,
                image_id.removeprefix("sha256:")[:12],
                f"mix{trial}@{image_id}",
            ]
            jobs = [(shapes[n % len(shapes)], clients[n % len(clients)]) for n in range(callers)]
            reports = _race_removals(jobs, namespace, allow_missing=True, force=True)
            _judge(counts, store, namespace, [image_id], reports)
    finally:
        for c in clients:
            c.close()
    return counts


def _small(note: str) -> Manifest:
    return manifest((file_layer("f", note.encode()),), note=note)


def _race_removals(
    jobs: Sequence[tuple[str, ImageRemovalClient]], namespace: str, *, allow_missing: bool, force: bool = False
) -> list[tuple[str, list[str]]]:
    """Run every job at once (a barrier lines them up); (answer, deleted IDs) per caller."""
    barrier = threading.Barrier(len(jobs))

    def one(reference: str, client: ImageRemovalClient) -> tuple[str, list[str]]:
        barrier.wait(10)
        try:
            items = client.remove(reference, namespace=namespace, allow_missing=allow_missing, force=force)
        except ImageRemovalError as error:
            return f"{error.code}:{error.reason}", []
        return "OK", [i.value for i in items if i.kind == "deleted"]

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: one(*job), jobs))


def _judge(
    counts: Counts, store: Store, namespace: str, ids: Sequence[str], reports: Sequence[tuple[str, list[str]]]
) -> None:
    remaining = {r.target.digest for r in store.records(namespace)}
    for image_id in ids:
        reported = sum(deleted.count(image_id) for _, deleted in reports)
        gone = image_id not in remaining
        if (gone and reported != 1) or (not gone and reported):
            counts[VIOLATION] += 1
        counts[f"gone={gone} deleted-reports={reported}"] += 1
    for answer, _ in reports:
        counts[f"answer={answer}"] += 1
    for record in store.records(namespace):
        if record.target.digest in ids:
            store.delete_record(namespace, record.name)


def kill_race(
    target: str,
    store_factory: Callable[[], Store],
    kill: Callable[[], None],
    restart: Callable[[], None],
    namespace: str,
    *,
    rounds: int,
    per_round: int = 60,
    kill_after_s: float = 0.15,
) -> Counts:
    """Issue 9 item 1: containerd SIGKILLed (and restarted) while removals stream through the project's
    client (which retries UNAVAILABLE). A violation: a call answered a retryable failure or NOT_FOUND while
    its image is gone afterwards, or answered OK while its image remains."""
    counts: Counts = collections.Counter()
    for round_ in range(rounds):
        store = store_factory()
        names = [f"docker.io/library/kill{round_}-{i}:latest" for i in range(per_round)]
        for i, name in enumerate(names):
            store.put(namespace, [name], _small(f"kill-{round_}-{i}"))
        store.close()
        answers: dict[str, str] = {}

        def worker(part: Sequence[str], answers: dict[str, str] = answers) -> None:
            with ImageRemovalClient(target, timeout=30) as client:
                for name in part:
                    answers[name] = _outcome(functools.partial(client.remove, name, namespace=namespace))

        threads = [threading.Thread(target=worker, args=(names[k::4],)) for k in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(kill_after_s)
        kill()
        time.sleep(0.3)
        restart()
        for thread in threads:
            thread.join(120)
        store = store_factory()
        left = store.names(namespace)
        for name in names:
            answer, gone = answers.get(name, "NO-ANSWER"), name not in left
            lie = (gone and answer.startswith(_SAYS_NOTHING_CHANGED)) or (not gone and answer == "OK")
            if lie:
                counts[VIOLATION] += 1
            counts[f"answer={answer} gone={gone}"] += 1
            if not gone:
                store.delete_record(namespace, name)
        store.close()
    return counts
