"""An image's content as the rules see it: its manifests, their blobs, and the chain IDs of their layers."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.domain.model import Descriptor
from imageremoval.server.domain.store import ImageStore


@dataclass(frozen=True, slots=True)
class PlatformManifest:
    """One present manifest of an image and the blobs it names."""

    descriptor: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers."""
        return (self.config, *self.layers) if self.config.digest else self.layers


@dataclass(slots=True)
class ImageContent:
    """What the walk found: the index (if any), its entries with their platforms, and the present manifests."""

    index: Descriptor | None = None
    manifests: list[PlatformManifest] = field(default_factory=list)
    entries: list[tuple[Descriptor, Mapping[str, str]]] = field(default_factory=list)  # every index entry
    _chain_ids: dict[str, str] | None = None  # manifest digest -> chain ID, read on demand
    _prefix_chains: set[str] | None = None  # chain IDs of every layer prefix, read on demand
    _diff_ids: asyncio.Future[dict[str, list[str]]] | None = None  # manifest digest -> diff IDs, read once
    walked: bool = True  # False when the walk was skipped (nothing needed it): no read happened

    @property
    def configs(self) -> set[str]:
        """Config digests of the present manifests."""
        return {m.config.digest for m in self.manifests if m.config.digest}

    @property
    def blobs(self) -> dict[str, int]:
        """Every walked blob (index, manifests, configs, layers) with its size."""
        found = {self.index.digest: self.index.size} if self.index else {}
        for m in self.manifests:
            found[m.descriptor.digest] = m.descriptor.size
            found.update({b.digest: b.size for b in m.blobs})
        return found

    @property
    def blob_count(self) -> int:
        return len(self.blobs)

    @property
    def size(self) -> int:
        """Bytes the image's present content names (shared blobs included)."""
        return sum(self.blobs.values())

    async def chain_ids(self, store: ImageStore) -> dict[str, str]:
        """Manifest digest -> chain ID of its layers (what a container's snapshot sits on); configs read once."""
        if self._chain_ids is None:
            stacks = await self._stacks(store)
            self._chain_ids = {digest: chain_id(ids) for digest, ids in stacks.items() if ids}
        return self._chain_ids

    async def prefix_chains(self, store: ImageStore) -> set[str]:
        """Chain IDs of every prefix of every present manifest's layer stack (what an unpack names its
        snapshots after, layer by layer); configs read once."""
        if self._prefix_chains is None:
            stacks = await self._stacks(store)
            self._prefix_chains = {chain_id(ids[: n + 1]) for ids in stacks.values() for n in range(len(ids))}
        return self._prefix_chains

    async def _stacks(self, store: ImageStore) -> dict[str, list[str]]:
        """Manifest digest -> the diff IDs of its layers, from its config (read once, shared by callers)."""
        if self._diff_ids is None:
            self._diff_ids = asyncio.ensure_future(_read_stacks(store, self.manifests))
        return await asyncio.shield(self._diff_ids)


async def _read_stacks(store: ImageStore, manifests: list[PlatformManifest]) -> dict[str, list[str]]:
    found = await asyncio.gather(*(_diff_ids_of(store, m) for m in manifests))
    return {m.descriptor.digest: ids for m, ids in zip(manifests, found, strict=True)}


def chain_id(diff_ids: list[str]) -> str:
    """The OCI chain ID of a layer stack: what containerd names the committed snapshot."""
    if not diff_ids:
        return ""
    current = diff_ids[0]
    for diff_id in diff_ids[1:]:
        current = "sha256:" + hashlib.sha256(f"{current} {diff_id}".encode()).hexdigest()
    return current


async def read_json(store: ImageStore, digest: str) -> dict[str, Any] | None:
    """A small JSON blob; None when absent, {} when unreadable or not a JSON object (treated as childless)."""
    try:
        blob = await store.read_blob(digest)
    except RemovalError as exc:
        if exc.metadata.get("tooLarge") == "true":
            return {}
        raise
    if blob is None:
        return None
    try:
        value = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


async def _diff_ids_of(store: ImageStore, manifest: PlatformManifest) -> list[str]:
    if not manifest.config.digest:
        return []
    config = await read_json(store, manifest.config.digest) or {}
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    return [d for d in diff_ids if isinstance(d, str)] if isinstance(diff_ids, list) else []
