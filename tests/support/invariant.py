"""The invariant checked after every test: no remaining image lost content it needs."""

from __future__ import annotations

import json

from .images import MEDIA_INDEX
from .store import Store


def broken_images(store: Store, namespace: str) -> list[str]:
    """Records whose target, or any child of a present manifest, is missing or does not match its digest."""
    problems: list[str] = []
    for record in store.records(namespace):
        target = record.target.digest
        if not store.intact(namespace, target):
            problems.append(f"{record.name}: target {target} missing or corrupt")
            continue
        manifests = [target]
        if record.target.media_type == MEDIA_INDEX:
            body = json.loads(store.read(namespace, target))
            # An index may list platforms that were never pulled; only present manifests must be whole.
            manifests = [m["digest"] for m in body["manifests"] if store.has(namespace, m["digest"])]
        for digest in manifests:
            if not store.intact(namespace, digest):
                problems.append(f"{record.name}: manifest {digest} corrupt")
                continue
            body = json.loads(store.read(namespace, digest))
            for child in [body["config"], *body["layers"]]:
                if not store.intact(namespace, child["digest"]):
                    problems.append(f"{record.name}: blob {child['digest']} of manifest {digest} lost")
    return problems
