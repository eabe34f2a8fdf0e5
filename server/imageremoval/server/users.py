"""Which containers use an image: by their root filesystem's lineage, falling back to their image name."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable

from .containerd import ContainerdClient, quote
from .errors import RemovalError
from .model import ContainerRecord, TaskState
from .walk import ImageContent

_log = logging.getLogger(__name__)
_NAME_FILTER_CHUNK = 64
DEFAULT_SNAPSHOTTER = "overlayfs"


class ContainerUsers:
    """The namespace's containers, listed once per removal, and what each one runs on.

    A container created from an image sits on a snapshot whose parent is the chain ID of that image's layers.
    That lineage does not change when the image's name is re-pointed or removed, unlike the name the container
    records, so it decides; the name decides only for containers without a snapshot, or when the snapshotter
    cannot be asked. (Two images with identical layers share a chain ID: a container on it counts as using
    both, which errs on the side of keeping content.)
    """

    def __init__(self, client: ContainerdClient, namespace: str, containers: list[ContainerRecord]) -> None:
        self._client = client
        self._namespace = namespace
        self.containers = containers
        self._states: dict[str, TaskState] | None = None
        self._name_targets: dict[str, str] = {}

    @classmethod
    async def load(cls, client: ContainerdClient, namespace: str) -> ContainerUsers:
        return cls(client, namespace, await client.list_containers(namespace))

    async def users(
        self,
        image_id: str,
        names: Collection[str],
        content: ImageContent,
        *,
        manifests: Collection[str] | None = None,
    ) -> list[tuple[str, TaskState]]:
        """(container ID, state) of the image's users, running ones first; `manifests` narrows to platforms."""
        if not self.containers:
            return []
        chains = await content.chain_ids(self._client, self._namespace)
        chain_set = {c for m, c in chains.items() if manifests is None or m in manifests}
        by_lineage = [c for c in self.containers if c.snapshot_key and chain_set]
        by_name = [c for c in self.containers if not (c.snapshot_key and chain_set)]
        found: list[ContainerRecord] = []
        snapshotters = sorted({c.snapshotter or DEFAULT_SNAPSHOTTER for c in by_lineage})
        lineages = await asyncio.gather(*(self._on_chains(s, chain_set) for s in snapshotters))
        for snapshotter, on_chains in zip(snapshotters, lineages, strict=True):
            mine = [c for c in by_lineage if (c.snapshotter or DEFAULT_SNAPSHOTTER) == snapshotter]
            if on_chains is None:
                by_name.extend(mine)  # the snapshotter cannot say: fall back to the name
            else:
                found.extend(c for c in mine if c.snapshot_key in on_chains)
        if by_name:
            targets = await self._targets({c.image for c in by_name if c.image and c.image not in names})
            found.extend(c for c in by_name if c.image in names or targets.get(c.image) == image_id)
        if not found:
            return []
        states = await self._task_states()
        users = [(c.id, states.get(c.id, TaskState.STOPPED)) for c in found]
        users.sort(key=lambda pair: pair[1] is not TaskState.RUNNING)  # the conflict force cannot override first
        return users

    async def _on_chains(self, snapshotter: str, chains: Iterable[str]) -> set[str] | None:
        try:
            return set(await self._client.snapshots_on(self._namespace, snapshotter, chains))
        except RemovalError as exc:
            _log.info("snapshotter %s cannot list snapshots (%s); matching by image name", snapshotter, exc.message)
            return None

    async def _targets(self, names: set[str]) -> dict[str, str]:
        """What each image name points to now; one List call per 64 names."""
        missing = sorted(names - self._name_targets.keys())
        for start in range(0, len(missing), _NAME_FILTER_CHUNK):
            chunk = missing[start : start + _NAME_FILTER_CHUNK]
            records = await self._client.list_images(self._namespace, [f"name=={quote(n)}" for n in chunk])
            self._name_targets.update({n: "" for n in chunk})
            self._name_targets.update({r.name: r.target.digest for r in records})
        return self._name_targets

    async def _task_states(self) -> dict[str, TaskState]:
        if self._states is None:
            self._states = await self._client.task_states(self._namespace)
        return self._states
