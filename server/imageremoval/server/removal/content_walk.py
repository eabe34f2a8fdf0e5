"""Walk an image's present content (index -> manifests -> config), reading only the small JSON blobs."""

from __future__ import annotations

import asyncio

from imageremoval.server.domain.content import ImageContent, PlatformManifest, read_json
from imageremoval.server.domain.model import MEDIA_INDEX, Descriptor
from imageremoval.server.domain.references import is_digest
from imageremoval.server.domain.store import ImageStore


def _descriptor(raw: object) -> Descriptor | None:
    """A descriptor from untrusted JSON; None when it is not one."""
    if not isinstance(raw, dict):
        return None
    digest, size = raw.get("digest"), raw.get("size", 0)
    if not isinstance(digest, str) or not is_digest(digest) or not isinstance(size, int):
        return None
    annotations = raw.get("annotations")
    return Descriptor(
        media_type=str(raw.get("mediaType", "")),
        digest=digest,
        size=size,
        annotations={str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
    )


async def _manifest(store: ImageStore, descriptor: Descriptor) -> PlatformManifest | None:
    body = await read_json(store, descriptor.digest)
    if body is None:
        return None
    config = _descriptor(body.get("config")) or Descriptor("", "", 0)
    layers = body.get("layers")
    return PlatformManifest(
        descriptor=descriptor,
        config=config,
        layers=tuple(d for d in map(_descriptor, layers if isinstance(layers, list) else []) if d is not None),
    )


def _platform(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {k: str(raw.get(k, "")) for k in ("os", "architecture", "variant")}


async def walk_present(store: ImageStore, target: Descriptor) -> ImageContent:
    """The image's present children; the manifests of an index are read concurrently."""
    content = ImageContent()
    if target.media_type in MEDIA_INDEX:
        content.index = target
        index = await read_json(store, target.digest)
        if index is None:
            return content
        raw_entries = index.get("manifests")
        for raw in raw_entries if isinstance(raw_entries, list) else []:
            descriptor = _descriptor(raw)
            if descriptor is not None and descriptor.media_type not in MEDIA_INDEX:
                content.entries.append((descriptor, _platform(raw.get("platform"))))
        unique = list({d.digest: d for d, _ in content.entries}.values())
        found = await asyncio.gather(*(_manifest(store, d) for d in unique))
        content.manifests.extend(m for m in found if m is not None)  # absent ones were never pulled
    else:
        manifest = await _manifest(store, target)
        if manifest is not None:
            content.manifests.append(manifest)
    return content
