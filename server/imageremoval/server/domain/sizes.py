"""Exact sizes from containerd's own garbage-collection graph: what an image holds, and what only it holds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from imageremoval.server.domain.model import (
    LABEL_GC_CONTENT_PREFIX,
    LABEL_GC_SNAPSHOT_PREFIX,
    ContainerRecord,
    ContentInfo,
    LeaseResource,
    SnapshotInfo,
)

LABEL_GC_ROOT = "containerd.io/gc.root"
_SHARED = ""  # holder marker: reached from more than one root


def blob_node(digest: str) -> str:
    """The graph node of a blob."""
    return f"c|{digest}"


def snapshot_node(snapshotter: str, key: str) -> str:
    """The graph node of a snapshot."""
    return f"s|{snapshotter}|{key}"


def parse_node(node: str) -> tuple[str, str, str]:
    """(blob digest, snapshotter, snapshot key) of a node; the unused part is empty."""
    kind, _, rest = node.partition("|")
    if kind == "c":
        return rest, "", ""
    snapshotter, _, key = rest.partition("|")
    return "", snapshotter, key


def _label_refs(labels: Mapping[str, str]) -> list[str]:
    """The nodes a resource's garbage-collection labels reference (containerd's gc.ref.* convention)."""
    refs: list[str] = []
    for key, value in labels.items():
        if key.startswith(LABEL_GC_CONTENT_PREFIX) or key == LABEL_GC_CONTENT_PREFIX.rstrip("."):
            refs.append(blob_node(value))
        elif key.startswith(LABEL_GC_SNAPSHOT_PREFIX):
            snapshotter = key[len(LABEL_GC_SNAPSHOT_PREFIX) :].split("/", 1)[0]
            if snapshotter:
                refs.append(snapshot_node(snapshotter, value))
    return refs


@dataclass(slots=True)
class ResourceGraph:
    """Present blobs and snapshots and the references between them, as containerd's collector follows them.

    Nodes are present resources only; a reference to something absent leads nowhere. Snapshot sizes are
    filled in later (Usage is one call per snapshot), blob sizes come with the content listing.
    """

    edges: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)  # held by something other than an image or container
    container_roots: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        content: Iterable[ContentInfo],
        snapshots: Iterable[SnapshotInfo],
        leases: Iterable[LeaseResource],
        containers: Iterable[ContainerRecord],
    ) -> ResourceGraph:
        graph = cls()
        for info in content:
            node = blob_node(info.digest)
            graph.edges[node] = tuple(_label_refs(info.labels))
            graph.sizes[node] = info.size
            if LABEL_GC_ROOT in info.labels:
                graph.roots.append(node)
        for snap in snapshots:
            node = snapshot_node(snap.snapshotter, snap.name)
            refs = _label_refs(snap.labels)
            if snap.parent:
                refs.append(snapshot_node(snap.snapshotter, snap.parent))
            graph.edges[node] = tuple(refs)
            if LABEL_GC_ROOT in snap.labels:
                graph.roots.append(node)
        for resource in leases:
            if resource.type == "content":
                graph.roots.append(blob_node(resource.id))
            elif resource.type.startswith("snapshots/"):
                graph.roots.append(snapshot_node(resource.type.removeprefix("snapshots/"), resource.id))
        for container in containers:
            if container.snapshot_key:
                graph.container_roots.append(
                    snapshot_node(container.snapshotter or "overlayfs", container.snapshot_key)
                )
            graph.container_roots.extend(_label_refs(container.labels))
        return graph

    def closure(self, starts: Iterable[str]) -> set[str]:
        """Every present node reachable from these."""
        edges = self.edges
        seen: set[str] = set()
        stack = [n for n in starts if n in edges]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            for child in edges[node]:
                if child in edges and child not in seen:
                    stack.append(child)
        return seen

    def snapshots_in(self, nodes: Iterable[str]) -> list[str]:
        """The snapshot nodes among these (whose sizes need the snapshotter's Usage)."""
        return [n for n in nodes if n.startswith("s|")]

    def size(self, nodes: Iterable[str]) -> int:
        return sum(self.sizes.get(n, 0) for n in nodes)


@dataclass(frozen=True, slots=True)
class ImageSizes:
    """One image's sizes: its blobs, its snapshots, and what removing it alone would free."""

    content_bytes: int
    snapshot_bytes: int
    unique_bytes: int


def image_closures(graph: ResourceGraph, targets: Mapping[str, str]) -> dict[str, set[str]]:
    """Image ID -> every present node it holds (target blob, children by label, snapshot chain)."""
    return {image_id: graph.closure([blob_node(target)]) for image_id, target in targets.items()}


def image_sizes(graph: ResourceGraph, closures: Mapping[str, set[str]]) -> dict[str, ImageSizes]:
    """Per image: its content and snapshot bytes, and its unique bytes (held by no other image nor a lease).

    Containers are not roots here: an image in use reports what would be freed once its containers were
    gone. Each node is visited once per image that holds it, so the cost is the sum of the closures.
    """
    holder: dict[str, str] = {}
    for image_id, nodes in closures.items():
        for node in nodes:
            if holder.setdefault(node, image_id) != image_id:
                holder[node] = _SHARED
    held_otherwise = graph.closure(graph.roots)
    sizes = graph.sizes
    result: dict[str, ImageSizes] = {}
    for image_id, nodes in closures.items():
        blobs = snaps = unique = 0
        for node in nodes:
            size = sizes.get(node, 0)
            if node[0] == "c":
                blobs += size
            else:
                snaps += size
            if holder[node] == image_id and node not in held_otherwise:
                unique += size
        result[image_id] = ImageSizes(content_bytes=blobs, snapshot_bytes=snaps, unique_bytes=unique)
    return result


def reclaimable(graph: ResourceGraph, closures: Mapping[str, set[str]], removed: Sequence[str]) -> dict[str, list[int]]:
    """Node -> indexes (into `removed`) of the removed images holding it, for every node that removing them
    all frees: held by them and by no surviving image, container or lease."""
    gone = set(removed)
    survivors = [n for image_id, nodes in closures.items() if image_id not in gone for n in nodes]
    kept = graph.closure([*survivors, *graph.roots, *graph.container_roots])
    freed: dict[str, list[int]] = {}
    for position, image_id in enumerate(removed):
        for node in closures.get(image_id, ()):
            if node not in kept:
                freed.setdefault(node, []).append(position)
    return freed


def freed_by_platforms(
    graph: ResourceGraph, closures: Mapping[str, set[str]], image_id: str, manifests: Iterable[str]
) -> set[str]:
    """What dropping these manifests from an index frees: held through them and by nothing else."""
    index = blob_node(image_id)
    dropped = {blob_node(m) for m in manifests}
    edges = graph.edges.get(index, ())
    graph.edges[index] = tuple(n for n in edges if n not in dropped)
    try:
        others = [n for other, nodes in closures.items() if other != image_id for n in nodes]
        kept = graph.closure([index, *others, *graph.roots, *graph.container_roots])
    finally:
        graph.edges[index] = edges
    return graph.closure(dropped) - kept
