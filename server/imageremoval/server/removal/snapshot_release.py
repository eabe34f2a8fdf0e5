"""After the collection: configs no image uses any more drop their snapshot references, freeing the layers."""

from __future__ import annotations

import asyncio
import logging

from imageremoval.server.domain.content import ImageContent
from imageremoval.server.domain.errors import NotFoundInContainerd, RemovalError
from imageremoval.server.domain.model import LABEL_GC_SNAPSHOT_PREFIX, ContentInfo
from imageremoval.server.domain.store import ImageStore
from imageremoval.server.removal.call import Call
from imageremoval.server.removal.record_changes import collect_garbage

_log = logging.getLogger(__name__)


async def release_snapshots(call: Call, content: ImageContent) -> int:
    """After collection, configs still held (by a lease) but used by no image lose their snapshot
    references, and one more collection frees those snapshots. Also counts the bytes freed. Never fatal.

    Content.Info per blob, concurrently: a filtered Content.List would scan the whole content store.
    """
    store, namespace = call.store, call.request.namespace
    metrics = call.services.recorder.metrics
    configs = sorted(content.configs)
    asked = list(content.blobs) if metrics is not None else configs
    infos = await asyncio.gather(*(_info(store, digest) for digest in asked))
    # Unknown (unreadable) blobs count as remaining: never reported as freed, never released.
    remaining = {digest: info for digest, info in zip(asked, infos, strict=True) if info is not None}
    if metrics is not None:
        freed = sum(size for digest, size in content.blobs.items() if digest not in remaining)
        metrics.reclaimed(namespace, freed)
    released = 0
    for config in (c for c in configs if c in remaining):
        snapshot_labels = {k: "" for k in remaining[config].labels if k.startswith(LABEL_GC_SNAPSHOT_PREFIX)}
        if not snapshot_labels:
            continue
        try:
            if await store.config_in_use(config):
                continue  # another manifest (so another image) still uses this config
            await store.set_content_labels(config, snapshot_labels)
            released += 1
        except (RemovalError, NotFoundInContainerd) as exc:
            _log.warning("release-snapshots failed for %s: %s", config, exc)
    if released:
        await collect_garbage(store)
    return released


async def _info(store: ImageStore, digest: str) -> ContentInfo | None:
    """A blob's info; None when it is gone. Unreadable: an info without labels (kept, nothing released)."""
    try:
        return await store.content(digest)
    except RemovalError as exc:
        _log.warning("release-snapshots: cannot read %s: %s", digest, exc.message)
        return ContentInfo(digest=digest, size=0)
