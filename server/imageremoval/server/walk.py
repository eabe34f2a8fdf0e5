"""Walk an image's present content (index -> manifests -> config), reading only the small JSON blobs."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .containerd import ContainerdClient
from .errors import NotFoundInContainerd
from .model import MEDIA_CONFIG, MEDIA_INDEX, MEDIA_MANIFEST, Descriptor


@dataclass(frozen=True, slots=True)
class PlatformManifest:
    """One present manifest of an image, with what identifies its unpacked layers."""

    descriptor: Descriptor
    platform: Mapping[str, str]  # os, architecture, variant (from the index or the config)
    config: Descriptor
    chain_id: str  # the snapshot a container created from this manifest sits on
    blobs: tuple[Descriptor, ...]  # config and layers


@dataclass(slots=True)
class ImageContent:
    """What the walk found: the present manifests and every blob they name."""

    index: Descriptor | None = None
    manifests: list[PlatformManifest] = field(default_factory=list)
    missing_manifests: list[Descriptor] = field(default_factory=list)

    @property
    def configs(self) -> set[str]:
        """Config digests of the present manifests."""
        return {m.config.digest for m in self.manifests}

    @property
    def chain_ids(self) -> set[str]:
        """Chain IDs of the present manifests' layers."""
        return {m.chain_id for m in self.manifests if m.chain_id}

    @property
    def blob_count(self) -> int:
        """Index, manifests, configs and layers walked."""
        return (1 if self.index else 0) + sum(1 + len(m.blobs) for m in self.manifests)

    @property
    def size(self) -> int:
        """Bytes the image's present content names (shared blobs included)."""
        total = self.index.size if self.index else 0
        return total + sum(m.descriptor.size + sum(b.size for b in m.blobs) for m in self.manifests)


def chain_id(diff_ids: list[str]) -> str:
    """The OCI chain ID of a layer stack: what containerd names the committed snapshot."""
    if not diff_ids:
        return ""
    current = diff_ids[0]
    for diff_id in diff_ids[1:]:
        current = "sha256:" + hashlib.sha256(f"{current} {diff_id}".encode()).hexdigest()
    return current


def _descriptor(raw: Mapping[str, Any]) -> Descriptor:
    return Descriptor(
        media_type=str(raw.get("mediaType", "")),
        digest=str(raw.get("digest", "")),
        size=int(raw.get("size", 0)),
        annotations={str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
    )


def _json(blob: bytes) -> dict[str, Any]:
    try:
        value = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


async def _manifest(
    client: ContainerdClient, namespace: str, descriptor: Descriptor, platform: Mapping[str, str]
) -> PlatformManifest | None:
    try:
        manifest = _json(await client.read_blob(namespace, descriptor.digest))
    except NotFoundInContainerd:
        return None
    config = _descriptor(manifest.get("config") or {})
    layers = tuple(_descriptor(layer) for layer in manifest.get("layers") or [])
    diff_ids: list[str] = []
    found_platform = dict(platform)
    if config.digest:
        try:
            config_json = _json(await client.read_blob(namespace, config.digest))
        except NotFoundInContainerd:
            config_json = {}
        rootfs = config_json.get("rootfs") or {}
        diff_ids = [str(d) for d in rootfs.get("diff_ids") or []]
        if not found_platform:
            found_platform = {
                "os": str(config_json.get("os", "")),
                "architecture": str(config_json.get("architecture", "")),
                "variant": str(config_json.get("variant", "")),
            }
    return PlatformManifest(
        descriptor=descriptor,
        platform=found_platform,
        config=config,
        chain_id=chain_id(diff_ids),
        blobs=(config, *layers),
    )


async def walk_present(client: ContainerdClient, namespace: str, target: Descriptor) -> ImageContent:
    """The image's present children; manifests of an index are read concurrently."""
    content = ImageContent()
    if target.media_type in MEDIA_INDEX:
        content.index = target
        try:
            index = _json(await client.read_blob(namespace, target.digest))
        except NotFoundInContainerd:
            return content
        entries = [
            (_descriptor(raw), {str(k): str(v) for k, v in (raw.get("platform") or {}).items()})
            for raw in index.get("manifests") or []
        ]
        manifests = [(d, p) for d, p in entries if d.media_type in MEDIA_MANIFEST or d.media_type == ""]
        found = await asyncio.gather(*(_manifest(client, namespace, d, p) for d, p in manifests))
        for (descriptor, _), manifest in zip(manifests, found, strict=True):
            if manifest is None:
                content.missing_manifests.append(descriptor)
            else:
                content.manifests.append(manifest)
    elif target.media_type in MEDIA_MANIFEST or target.media_type not in MEDIA_CONFIG:
        manifest = await _manifest(client, namespace, target, {})
        if manifest is not None:
            content.manifests.append(manifest)
    return content
