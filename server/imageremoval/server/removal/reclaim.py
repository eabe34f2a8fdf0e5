"""What a RemoveImage frees: predicted exactly for validate_only, measured after collection otherwise."""

from __future__ import annotations

import asyncio

from imageremoval.server.cleaning.inventory import InventoryReader
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.model import LABEL_GC_SNAPSHOT_PREFIX, Item, ItemKind
from imageremoval.server.domain.sizes import freed_by_platforms, reclaimable
from imageremoval.server.domain.store import ImageStore, ImageStores
from imageremoval.server.removal.content_walk import walk_present
from imageremoval.server.removal.resolve import resolve
from imageremoval.server.removal.service import ImageRemover, RemovalRequest

_MAX_CHAIN = 256  # layers a snapshot chain may have before we stop following parents


class ReclaimEstimator:
    """Wraps the remover to answer RemoveImageResponse.reclaimable_bytes."""

    def __init__(self, stores: ImageStores, remover: ImageRemover, reader: InventoryReader) -> None:
        self._stores = stores
        self._remover = remover
        self._reader = reader

    async def validate(self, request: RemovalRequest) -> tuple[list[Item], int]:
        """The validation's items, and what removing would free (nothing another image, container or lease
        needs), from the same graph ListImages sizes images with."""
        items = await self._remover.remove(request)
        deleted = [i.value for i in items if i.kind is ItemKind.DELETED]
        if not deleted:
            return items, 0
        inventory = await self._reader.read(request.namespace)
        images = [d for d in deleted if d in inventory.closures]
        if images:
            freed = reclaimable(inventory.graph, inventory.closures, images)
            return items, inventory.graph.size(freed)
        # Platforms: the deleted items are manifests of the image the items name.
        owner = items[0].image_id
        nodes = freed_by_platforms(inventory.graph, inventory.closures, owner, deleted)
        return items, inventory.graph.size(nodes)

    async def remove(self, request: RemovalRequest) -> tuple[list[Item], int]:
        """Remove, then measure: the image's blobs and snapshots (as they were before) that are gone now."""
        candidates = await self._candidates(request)
        items = await self._remover.remove(request)
        if not any(i.kind is ItemKind.DELETED for i in items) or not candidates:
            return items, 0
        return items, await self._gone(self._stores.scope(request.namespace), candidates)

    async def _candidates(self, request: RemovalRequest) -> dict[tuple[str, str, str], int]:
        """(kind, snapshotter, id) -> bytes of everything the image holds now; empty when it cannot be read
        (the removal itself then reports the error). Nothing is read for a request the remover will refuse
        before reading, and the reads are bounded by the caller's deadline."""
        try:
            reference = self._remover.check(request)
        except RemovalError:
            return {}
        store = self._stores.scope(request.namespace, deadline=request.deadline)
        try:
            resolution = await resolve(store, reference)
            content = await walk_present(store, resolution.all[0].target)
        except RemovalError:
            return {}
        found: dict[tuple[str, str, str], int] = {("c", "", d): s for d, s in content.blobs.items()}
        for config in content.configs:
            try:
                info = await store.content(config)
            except RemovalError:
                continue
            if info is None:
                continue
            for key, top in info.labels.items():
                if key.startswith(LABEL_GC_SNAPSHOT_PREFIX):
                    snapshotter = key[len(LABEL_GC_SNAPSHOT_PREFIX) :].split("/", 1)[0]
                    found.update(await self._chain(store, snapshotter, top))
        return found

    async def _chain(self, store: ImageStore, snapshotter: str, top: str) -> dict[tuple[str, str, str], int]:
        chain: dict[tuple[str, str, str], int] = {}
        snapshots = {s.name: s for s in await store.snapshots(snapshotter)}
        key = top
        while key in snapshots and len(chain) < _MAX_CHAIN:
            chain[("s", snapshotter, key)] = await store.snapshot_usage(snapshotter, key)
            key = snapshots[key].parent
        return chain

    async def _gone(self, store: ImageStore, candidates: dict[tuple[str, str, str], int]) -> int:
        """Bytes of the candidates really gone; anything that cannot be checked counts as present."""
        present: set[tuple[str, str, str]] = set()
        for snapshotter in sorted({s for kind, s, _ in candidates if kind == "s"}):
            try:
                present.update(("s", snapshotter, s.name) for s in await store.snapshots(snapshotter))
            except RemovalError:
                present.update(k for k in candidates if k[0] == "s" and k[1] == snapshotter)

        async def blob_present(digest: str) -> bool:
            try:
                return await store.content(digest) is not None
            except RemovalError:
                return True

        blobs = [k for k in candidates if k[0] == "c"]
        found = await asyncio.gather(*(blob_present(k[2]) for k in blobs))
        present.update(k for k, here in zip(blobs, found, strict=True) if here)
        return sum(size for key, size in candidates.items() if key not in present)
