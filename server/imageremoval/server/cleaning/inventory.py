"""A namespace's images as a node owner sees them: names, platforms, users, protection and exact sizes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imageremoval.server.domain.container_users import DEFAULT_SNAPSHOTTER, ContainerUsers
from imageremoval.server.domain.content import ImageContent, PlatformManifest, chain_id
from imageremoval.server.domain.errors import NotFoundInContainerd, RemovalError
from imageremoval.server.domain.images import Inventory, InventoryImage
from imageremoval.server.domain.model import (
    LABEL_GC_CONTENT_PREFIX,
    LABEL_GC_SNAPSHOT_PREFIX,
    LABEL_PARENT,
    MEDIA_INDEX,
    ContainerRecord,
    ContentInfo,
    Descriptor,
    ImageRecord,
    LeaseResource,
    SnapshotInfo,
    TaskState,
)
from imageremoval.server.domain.platforms import PlatformSpec
from imageremoval.server.domain.policy import PINNED_LABEL, RemovalPolicy
from imageremoval.server.domain.references import familiar_name, is_dangling
from imageremoval.server.domain.sizes import (
    ResourceGraph,
    blob_node,
    image_closures,
    image_sizes,
    parse_node,
)
from imageremoval.server.domain.store import ImageStore, ImageStores
from imageremoval.server.domain.usage import usage_of, without_usage

_log = logging.getLogger(__name__)
_READ_CONCURRENCY = 32
_CACHE_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class _Config:
    """What an image config tells the inventory."""

    platform: PlatformSpec
    labels: Mapping[str, str]
    chain: str


@dataclass(slots=True)
class _Described:
    platforms: list[PlatformSpec] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    manifests: list[PlatformManifest] = field(default_factory=list)
    chains: dict[str, str] = field(default_factory=dict)  # manifest digest -> chain ID


class _BlobCache:
    """Parsed small JSON blobs by digest. Blobs are content-addressed, so an entry never goes stale."""

    def __init__(self, limit: int = _CACHE_ENTRIES) -> None:
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._limit = limit

    def get(self, key: str) -> Any:
        return self._entries.get(key)

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)


class InventoryReader:
    """Reads inventories; one per server, so immutable blobs and committed snapshots are read only once."""

    def __init__(self, stores: ImageStores, policy: RemovalPolicy) -> None:
        self._stores = stores
        self._policy = policy
        self._blobs = _BlobCache()
        self._usage: OrderedDict[tuple[str, str], int] = OrderedDict()  # committed snapshots only
        self._names: dict[str, str] = {}
        self._rules: dict[tuple[str, str], str] = {}
        self._descriptions: dict[str, tuple[_Described, tuple[tuple[str, bool], ...]]] = {}

    async def read(self, namespace: str) -> Inventory:
        """One consistent-enough read of the namespace: records, content, snapshots, leases, containers."""
        store = self._stores.scope(namespace)
        records, content, containers, leases = await asyncio.gather(
            store.images(), store.all_content(), store.containers(), store.lease_resources()
        )
        snapshots = await self._snapshots(store, content, containers, leases)
        graph = ResourceGraph.build(content, snapshots, leases, containers)
        by_id: dict[str, list[ImageRecord]] = {}
        for record in records:
            by_id.setdefault(record.image_id, []).append(record)
        closures = image_closures(graph, {image_id: image_id for image_id in by_id})
        committed = {(s.snapshotter, s.name) for s in snapshots if s.committed}
        await self._size_snapshots(store, graph, set().union(*closures.values()) if closures else set(), committed)
        sizes = image_sizes(graph, closures)
        infos = {c.digest: c for c in content}
        ids = sorted(by_id)
        described = await self._describe_all(store, [by_id[i][0].target for i in ids], infos)
        users = ContainerUsers(store, containers)
        images: list[InventoryImage] = []
        for image_id, about in zip(ids, described, strict=True):
            own = tuple(sorted(by_id[image_id], key=lambda r: r.name))
            # Always asked: dockerd's stopped containers have no record, only snapshots the rule can see.
            using = await containers_using(users, image_id, {r.name for r in own}, about)
            running = sum(1 for _, state in using if state is TaskState.RUNNING)
            labels = dict(about.labels)
            for record in own:
                labels.update(record.labels)
            images.append(
                InventoryImage(
                    id=image_id,
                    records=own,
                    names=tuple(sorted(self._familiar(r.name) for r in own if not is_dangling(r.name))),
                    created_ns=min((r.created_ns for r in own), default=0),
                    dangling=all(is_dangling(r.name) for r in own),
                    labels=without_usage(labels),
                    platforms=tuple(about.platforms),
                    running=running,
                    stopped=len(using) - running,
                    protected_rule=next(filter(None, (self._protected(r) for r in own)), ""),
                    sizes=sizes[image_id],
                    parent=next((r.labels[LABEL_PARENT] for r in own if r.labels.get(LABEL_PARENT)), ""),
                    usage=usage_of(own),
                    users=tuple(sorted(c for c, _ in using)),
                )
            )
        return Inventory(namespace=namespace, images=images, graph=graph, closures=closures)

    def _familiar(self, name: str) -> str:
        """Familiar names, remembered: parsing a reference costs more than everything else per image."""
        found = self._names.get(name)
        if found is None:
            found = self._names[name] = familiar_name(name)
            if len(self._names) > _CACHE_ENTRIES:
                self._names.clear()
        return found

    def _protected(self, record: ImageRecord) -> str:
        """The policy's rule for one record, remembered by what decides it (its name and pinned label)."""
        key = (record.name, record.labels.get(PINNED_LABEL, ""))
        found = self._rules.get(key)
        if found is None:
            found = self._rules[key] = self._policy.protected_rule(record)
            if len(self._rules) > _CACHE_ENTRIES:
                self._rules.clear()
        return found

    async def _snapshots(
        self,
        store: ImageStore,
        content: Sequence[ContentInfo],
        containers: Sequence[ContainerRecord],
        leases: Sequence[LeaseResource],
    ) -> list[SnapshotInfo]:
        """Every snapshot of every snapshotter something refers to (content labels, containers, leases)."""
        names = {DEFAULT_SNAPSHOTTER}
        for info in content:
            names.update(
                k[len(LABEL_GC_SNAPSHOT_PREFIX) :].split("/", 1)[0]
                for k in info.labels
                if k.startswith(LABEL_GC_SNAPSHOT_PREFIX)
            )
        names.update(c.snapshotter for c in containers if c.snapshotter)
        names.update(r.type.removeprefix("snapshots/") for r in leases if r.type.startswith("snapshots/"))
        found: list[SnapshotInfo] = []
        for name in sorted(n for n in names if n):
            try:
                found.extend(await store.snapshots(name))
            except RemovalError as exc:
                _log.info("cannot list snapshots of %s: %s", name, exc.message)
        return found

    async def _size_snapshots(
        self, store: ImageStore, graph: ResourceGraph, nodes: Collection[str], committed: Collection[tuple[str, str]]
    ) -> None:
        """Usage of every snapshot an image holds; committed layers are immutable, so asked for once."""
        semaphore = asyncio.Semaphore(_READ_CONCURRENCY)

        async def usage(node: str) -> None:
            _, snapshotter, key = parse_node(node)
            cached = self._usage.get((snapshotter, key))
            if cached is None:
                async with semaphore:
                    try:
                        cached = await store.snapshot_usage(snapshotter, key)
                    except (NotFoundInContainerd, RemovalError):
                        cached = 0
                if (snapshotter, key) in committed:
                    self._usage[(snapshotter, key)] = cached
                    if len(self._usage) > _CACHE_ENTRIES:
                        self._usage.popitem(last=False)
            graph.sizes[node] = cached

        await asyncio.gather(*(usage(n) for n in graph.snapshots_in(nodes)))

    async def _describe_all(
        self, store: ImageStore, targets: Sequence[Descriptor], infos: Mapping[str, ContentInfo]
    ) -> list[_Described]:
        """Describe every image from cached blobs; the blobs missing from the cache are read concurrently, in
        rounds (an index, then its manifests, then their configs), so a warm listing makes no read at all."""
        semaphore = asyncio.Semaphore(_READ_CONCURRENCY)
        failed: set[str] = set()
        described: list[_Described | None] = [None] * len(targets)
        pending = list(range(len(targets)))
        for _ in range(4):
            missing: set[str] = set()
            still: list[int] = []
            for position in pending:
                try:
                    described[position] = self._described(targets[position], infos, failed)
                except _Missing as miss:
                    missing.add(miss.digest)
                    still.append(position)
            if not still:
                break
            found = await asyncio.gather(*(self._read_json(store, d, semaphore) for d in sorted(missing)))
            for digest, value in zip(sorted(missing), found, strict=True):
                if value is None:
                    failed.add(digest)
                else:
                    self._blobs.put(digest, value)
            pending = still
        return [d if d is not None else _Described() for d in described]

    async def _read_json(self, store: ImageStore, digest: str, semaphore: asyncio.Semaphore) -> dict[str, Any] | None:
        """A small JSON blob, parsed ({} when not a JSON object); None when it cannot be read."""
        async with semaphore:
            try:
                raw = await store.read_blob(digest)
            except RemovalError:
                return None
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    def _json(self, digest: str, failed: Collection[str]) -> dict[str, Any]:
        """A cached blob; {} when it could not be read; _Missing when it was not read yet."""
        if digest in failed:
            return {}
        cached = self._blobs.get(digest)
        if cached is None:
            raise _Missing(digest)
        return cached  # type: ignore[no-any-return]

    def _config(self, digest: str, failed: Collection[str]) -> _Config:
        body = self._json(digest, failed)
        config = body.get("config")
        labels = config.get("Labels") if isinstance(config, dict) else None
        rootfs = body.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        return _Config(
            platform=PlatformSpec(
                os=str(body.get("os", "")),
                architecture=str(body.get("architecture", "")),
                variant=str(body.get("variant", "")),
            ),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            chain=chain_id([d for d in diff_ids if isinstance(d, str)] if isinstance(diff_ids, list) else []),
        )

    def _described(self, target: Descriptor, infos: Mapping[str, ContentInfo], failed: Collection[str]) -> _Described:
        """The description of a target, remembered with the presence of every blob it looked at: a target is
        content-addressed, so only those blobs coming or going can change it."""
        cached = self._descriptions.get(target.digest)
        if cached is not None and all((digest in infos) == present for digest, present in cached[1]):
            return cached[0]
        consulted: list[str] = []
        described = self._describe(target, infos, failed, consulted)
        if not failed:
            self._descriptions[target.digest] = (described, tuple((d, d in infos) for d in consulted))
            if len(self._descriptions) > _CACHE_ENTRIES:
                self._descriptions.clear()
        return described

    def _describe(
        self, target: Descriptor, infos: Mapping[str, ContentInfo], failed: Collection[str], consulted: list[str]
    ) -> _Described:
        """Platforms, config labels and chain IDs of the present manifests (only configs and indexes are read)."""
        described = _Described()
        entries: list[tuple[Descriptor, PlatformSpec | None]] = []
        if target.media_type in MEDIA_INDEX:
            raw = self._json(target.digest, failed).get("manifests")
            for entry in raw if isinstance(raw, list) else []:
                if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                    continue
                if entry.get("mediaType") in MEDIA_INDEX:
                    continue
                plat = entry.get("platform")
                spec = (
                    PlatformSpec(
                        str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", ""))
                    )
                    if isinstance(plat, dict)
                    else None
                )
                size = entry.get("size", 0)
                descriptor = Descriptor(
                    str(entry.get("mediaType", "")), entry["digest"], size if isinstance(size, int) else 0
                )
                entries.append((descriptor, spec))
        else:
            entries.append((target, None))
        for descriptor, spec in entries:
            consulted.append(descriptor.digest)
            info = infos.get(descriptor.digest)
            if info is None:
                continue  # never pulled: not present
            config_digest = info.labels.get(LABEL_GC_CONTENT_PREFIX + "config", "")
            if not config_digest:
                raw_config = self._json(descriptor.digest, failed).get("config")
                config_digest = str(raw_config.get("digest", "")) if isinstance(raw_config, dict) else ""
            consulted.append(config_digest)
            config = self._config(config_digest, failed) if config_digest in infos else None
            platform = spec or (config.platform if config is not None else None)
            if platform is not None and platform.os and platform not in described.platforms:
                described.platforms.append(platform)
            if config is not None:
                for key, value in config.labels.items():
                    described.labels.setdefault(key, value)
                if config.chain:
                    described.chains[descriptor.digest] = config.chain
            size = infos[config_digest].size if config_digest in infos else 0
            described.manifests.append(
                PlatformManifest(descriptor=descriptor, config=Descriptor("", config_digest, size), layers=())
            )
        return described


class _Missing(Exception):
    """A blob the cache does not hold yet."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest


def _content_of(described: _Described) -> ImageContent:
    """The walk's view of an image, from what the inventory already read (no further reads)."""
    # The chain IDs are already known: passing them spares the rule a second read of every config.
    return ImageContent(manifests=list(described.manifests), _chain_ids=dict(described.chains))


async def containers_using(
    users: ContainerUsers, image_id: str, names: Collection[str], described: _Described
) -> list[tuple[str, TaskState]]:
    """The containers using an image, by the one rule RemoveImage applies (users.ContainerUsers)."""
    return await users.users(image_id, names, _content_of(described))


__all__ = ["Inventory", "InventoryImage", "InventoryReader", "blob_node", "containers_using"]
