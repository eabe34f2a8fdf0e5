"""Users of an image that appear while its removal runs.

containerd has no lock between "nobody uses this image" and "delete it": a `ctr run` that read the image just
before the delete unpacks it, prepares its root filesystem and creates its container just after. So the
removal (1) counts a root filesystem prepared on the image's layers, or an unpack of them in progress, as a
user even before its container exists, (2) holds the image's content under a lease of its own across the
delete, (3) looks again once the records are gone, and puts them back if a user appeared, before the lease
(and with it the content) is released.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass

from imageremoval.server.domain.container_users import DEFAULT_SNAPSHOTTER, ContainerUsers
from imageremoval.server.domain.content import ImageContent
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.model import TaskState
from imageremoval.server.domain.store import ImageStore

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Seen:
    """The namespace right before the first change: every container, the image's users, the active snapshots
    on its layers (owned or not), and those no container owns yet (`pending`)."""

    containers: frozenset[str]
    users: frozenset[str]
    active: frozenset[str]
    pending: frozenset[str]
    snapshotters: tuple[str, ...]


async def _pending(
    store: ImageStore,
    snapshotters: Collection[str],
    content: ImageContent,
) -> set[str]:
    """Active snapshots on the image's chain IDs, or being unpacked into one of its layers (containerd's
    unpacker names them `extract-<unique> <chain ID>`), owned by a container or not."""
    chains = set((await content.chain_ids(store)).values())
    if not chains:
        return set()
    prefixes = await content.prefix_chains(store)
    found = await asyncio.gather(*(_active_in(store, s) for s in snapshotters))
    return {
        key
        for active in found
        for key, parent in active.items()
        if parent in chains or (" " in key and key.rsplit(" ", 1)[-1] in prefixes)
    }


async def _active_in(store: ImageStore, snapshotter: str) -> dict[str, str]:
    """A snapshotter containerd has not loaded (a container may name any) has nothing to show; its
    containers are matched by image name instead."""
    try:
        return await store.active_snapshots(snapshotter)
    except RemovalError as exc:
        _log.info("snapshotter %s cannot list snapshots (%s)", snapshotter, exc.message)
        return {}


async def seen_before(
    store: ImageStore,
    users: ContainerUsers,
    using: Collection[tuple[str, TaskState]],
    content: ImageContent,
) -> Seen:
    """The baseline, read right before the first change."""
    used = {c.snapshotter or DEFAULT_SNAPSHOTTER for c in users.containers}
    snapshotters = tuple(sorted(used | {DEFAULT_SNAPSHOTTER}))
    owned = {c.snapshot_key for c in users.containers} | {c.id for c in users.containers}
    active = await _pending(store, snapshotters, content)
    return Seen(
        containers=frozenset(c.id for c in users.containers),
        users=frozenset(c for c, _ in using),
        active=frozenset(active),
        pending=frozenset(active - owned),
        snapshotters=snapshotters,
    )


def pending_users(seen: Seen) -> list[tuple[str, TaskState]]:
    """Root filesystems and unpacks no container owns yet, as users: a container is on its way."""
    return [(key, TaskState.STOPPED) for key in sorted(seen.pending)]


async def newcomers(
    store: ImageStore,
    image_id: str,
    names: Collection[str],
    content: ImageContent,
    before: Seen,
) -> list[tuple[str, TaskState]]:
    """Users now that were not there before, in one round: a new active snapshot on the image's layers (or an
    unpack of them), as its container or as a stopped container on its way; and a new container record that
    names the image and has no snapshot there (containers are matched by name only when lineage cannot tell)."""
    containers, active = await asyncio.gather(store.containers(), _pending(store, before.snapshotters, content))
    owners = {c.snapshot_key: c.id for c in containers if c.snapshot_key}
    found = {owners.get(key, key) for key in active - before.active}
    found |= {c.id for c in containers if c.id not in before.containers and c.image in names and not c.snapshot_key}
    found -= before.users
    if not found:
        return []
    states = await store.task_states()
    new = [(c, states.get(c, TaskState.STOPPED)) for c in sorted(found)]
    new.sort(key=lambda pair: pair[1] is not TaskState.RUNNING)
    _log.debug("users of %s appeared during the removal: %s", image_id, new)
    return new
