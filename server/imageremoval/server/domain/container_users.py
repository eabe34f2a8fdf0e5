"""Which containers use an image: decided from the snapshots mounted above its layers, never from a name."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import Collection, Iterable

from imageremoval.server.domain.content import ImageContent
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.model import (
    LABEL_GC_SNAPSHOT_PREFIX,
    ContainerRecord,
    SnapshotInfo,
    SnapshotKind,
    TaskState,
)
from imageremoval.server.domain.store import ImageStore

_log = logging.getLogger(__name__)
DEFAULT_SNAPSHOTTER = "overlayfs"
# Unpacking commits each layer under its chain ID; other committed names (dockerd's `<id>-init`) are not layers.
_LAYER_SNAPSHOT = re.compile(r"sha256:[0-9a-f]{64}")
# dockerd keys a container's snapshots by its 64-hex ID: `<id>`, `<id>-init-key` while creating, and
# `<id>-<image>` for an image mounted with `--mount type=image`.
_DOCKER_SNAPSHOT = re.compile(r"(?P<id>[0-9a-f]{64})(-.*)?", re.DOTALL)


class SnapshotForest:
    """One snapshotter's snapshots of a namespace, as parent -> children, read with one List."""

    def __init__(self, snapshots: Iterable[SnapshotInfo]) -> None:
        self._kinds: dict[str, SnapshotKind] = {}
        self._children: dict[str, list[str]] = defaultdict(list)
        for snapshot in snapshots:
            self._kinds[snapshot.name] = snapshot.kind
            if snapshot.parent:
                self._children[snapshot.parent].append(snapshot.name)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def mounted_above(self, chains: Iterable[str]) -> list[str]:
        """Active and view snapshots on these layer stacks, through committed non-layer snapshots between.

        dockerd lays a container out as `<id>` (active) on `<id>-init` (committed) on the image's chain ID;
        containerd's own containers and build steps put an active snapshot straight on it. A committed
        snapshot named by a chain ID is another image's layer: a container above it uses that image, not this.
        """
        found: list[str] = []
        seen = set(chains)
        frontier = list(seen)
        while frontier:
            for child in self._children.get(frontier.pop(), ()):
                if child in seen:
                    continue
                seen.add(child)
                if self._kinds[child] is not SnapshotKind.COMMITTED:
                    found.append(child)
                elif not _LAYER_SNAPSHOT.fullmatch(child):
                    frontier.append(child)
        return sorted(found)


class ContainerUsers:
    """Which containers (running or stopped) use an image, for one namespace; everything read once and cached.

    The rule: a container uses an image when a mounted (active or view) snapshot sits above the chain ID of
    the image's layers, directly or through committed snapshots that are not layers. That lineage does not
    change when names are re-pointed or removed. It sees containerd's own containers (their record's
    snapshot key), dockerd's running and stopped containers (a snapshot keyed by the container ID, held by a
    lease of that name; a stopped one has no container record at all) and build steps. Only a container
    record whose root filesystem no snapshotter shows (no snapshot key, and no snapshot named by its ID), or
    whose snapshotter cannot be asked, is matched by the image name it records. Two images with identical
    layers share a chain ID: a container on it counts as using both, the side that keeps content.
    """

    def __init__(self, store: ImageStore, containers: list[ContainerRecord]) -> None:
        self._store = store
        self.containers = containers
        self._states: dict[str, TaskState] | None = None
        self._name_targets: dict[str, str] = {}
        self._forests: dict[str, asyncio.Task[SnapshotForest | None]] = {}
        self._config_snapshotters: dict[str, frozenset[str]] = {}

    @classmethod
    async def load(cls, store: ImageStore) -> ContainerUsers:
        return cls(store, await store.containers())

    async def users(
        self,
        image_id: str,
        names: Collection[str],
        content: ImageContent,
        *,
        manifests: Collection[str] | None = None,
    ) -> list[tuple[str, TaskState]]:
        """(container ID, state) of the image's users, running ones first; `manifests` narrows to platforms.

        `names` (the image's record names) serve only the fallback for containers whose root filesystem
        cannot be seen. `content` is the image's walked content: its configs give the layers' chain IDs.
        """
        for snapshotter in self._known_snapshotters():
            self._forest(snapshotter)  # listed while the configs are read
        chains, unpacked_in = await asyncio.gather(content.chain_ids(self._store), self._unpacked_in(content))
        chain_set = {c for m, c in chains.items() if manifests is None or m in manifests}
        if not chain_set:
            by_name = list(self.containers)  # the layers are unknown: only the names can tell
            found: dict[str, None] = {}
        else:
            found, by_name = await self._by_lineage(chain_set, self._known_snapshotters() | unpacked_in)
        if by_name:
            targets = await self._targets({c.image for c in by_name if c.image and c.image not in names})
            found.update((c.id, None) for c in by_name if c.image in names or targets.get(c.image) == image_id)
        if not found:
            return []
        states = await self._task_states()
        users = [(container, states.get(container, TaskState.STOPPED)) for container in found]
        users.sort(key=lambda pair: pair[1] is not TaskState.RUNNING)  # the conflict force cannot override first
        return users

    def _known_snapshotters(self) -> set[str]:
        """The default snapshotter and those the container records name."""
        return {DEFAULT_SNAPSHOTTER} | {c.snapshotter for c in self.containers if c.snapshotter}

    async def _by_lineage(
        self, chains: set[str], snapshotters: set[str]
    ) -> tuple[dict[str, None], list[ContainerRecord]]:
        """The users found above the chains, and the container records lineage cannot decide."""
        asked = sorted(snapshotters)
        forests = dict(zip(asked, await asyncio.gather(*map(self._forest, asked)), strict=True))
        owners = {(c.snapshotter or DEFAULT_SNAPSHOTTER, c.snapshot_key): c.id for c in self.containers}
        found: dict[str, None] = {}
        for snapshotter, forest in forests.items():
            if forest is not None:
                for key in forest.mounted_above(chains):
                    found[owners.get((snapshotter, key)) or _owner_of(key)] = None
        undecided = []
        for container in self.containers:
            if container.snapshot_key:
                seen = forests.get(container.snapshotter or DEFAULT_SNAPSHOTTER) is not None
            else:
                seen = any(forest is not None and container.id in forest for forest in forests.values())
            if not seen:
                undecided.append(container)
        return found, undecided

    async def _unpacked_in(self, content: ImageContent) -> frozenset[str]:
        """The snapshotters the image is unpacked in, from its configs' garbage-collection labels."""
        missing = [c for c in sorted(content.configs) if c not in self._config_snapshotters]
        infos = await asyncio.gather(*(self._config_labels(c) for c in missing))
        for config, labels in zip(missing, infos, strict=True):
            self._config_snapshotters[config] = frozenset(
                k.removeprefix(LABEL_GC_SNAPSHOT_PREFIX) for k in labels if k.startswith(LABEL_GC_SNAPSHOT_PREFIX)
            )
        return frozenset().union(*(self._config_snapshotters[c] for c in content.configs))

    async def _config_labels(self, config: str) -> Collection[str]:
        info = await self._store.content(config)
        return () if info is None else info.labels.keys()

    def _forest(self, snapshotter: str) -> asyncio.Task[SnapshotForest | None]:
        """One List per snapshotter and removal, shared by every image the removal checks."""
        if snapshotter not in self._forests:
            self._forests[snapshotter] = asyncio.ensure_future(self._read_forest(snapshotter))
        return self._forests[snapshotter]

    async def _read_forest(self, snapshotter: str) -> SnapshotForest | None:
        try:
            return SnapshotForest(await self._store.snapshots(snapshotter))
        except RemovalError as exc:
            _log.info("snapshotter %s cannot list snapshots (%s); matching by image name", snapshotter, exc.message)
            return None

    async def _targets(self, names: set[str]) -> dict[str, str]:
        """What each image name points to now ("" for a name no record has); asked once per name."""
        missing = names - self._name_targets.keys()
        if missing:
            records = await self._store.records_named(missing)
            self._name_targets.update(dict.fromkeys(missing, ""))
            self._name_targets.update({r.name: r.target.digest for r in records})
        return self._name_targets

    async def _task_states(self) -> dict[str, TaskState]:
        if self._states is None:
            self._states = await self._store.task_states()
        return self._states


def _owner_of(key: str) -> str:
    """The container a snapshot without a record naming it belongs to: dockerd's container ID, else the key."""
    docker = _DOCKER_SNAPSHOT.fullmatch(key)
    return docker.group("id") if docker else key
