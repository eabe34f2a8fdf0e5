"""Create the images a scenario removes, as a pull would (Content.Write, then Images.Create), in bulk."""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from imageremoval.gen.containerd.services.images.v1 import images_pb2
from imageremoval.gen.containerd.services.leases.v1 import leases_pb2
from tests.support.images import Index, Layer, Manifest, file_layer, index, manifest
from tests.support.store import Store

LAYERS_PER_IMAGE = 3
# An index of four platforms of which two are present, as a partial multi-platform pull leaves it.
INDEX_PLATFORMS = (("amd64", ""), ("arm64", "v8"), ("arm", "v7"), ("ppc64le", ""))
INDEX_PRESENT = 2

_unique = itertools.count()


class Own(enum.Enum):
    """Which blobs of a manifest image are written (the others belong to a base image)."""

    ALL = "all"
    MANIFEST_AND_CONFIG = "manifest+config"
    MANIFEST = "manifest"


@dataclass(frozen=True, slots=True)
class BenchImage:
    """An image a scenario created: its one name and the target its record points to."""

    name: str
    digest: str
    size: int
    media_type: str

    @property
    def short_id(self) -> str:
        """Docker's 12-hex short ID, which our server resolves with a filtered list."""
        return self.digest.removeprefix("sha256:")[:12]


def _layers(tag: str, count: int = LAYERS_PER_IMAGE) -> tuple[Layer, ...]:
    return tuple(file_layer(f"data/{position}", f"{tag}/{position}".encode()) for position in range(count))


def unique_manifest(tag: str) -> Manifest:
    """A 3-layer image whose every blob is its own (5 blobs: manifest, config, 3 layers)."""
    return manifest(_layers(tag), note=tag)


def unique_index(tag: str) -> tuple[Index, tuple[Manifest, ...]]:
    """A 4-platform index with its own content; returns it and the manifests left out (not pulled)."""
    manifests = tuple(
        manifest(_layers(f"{tag}/{arch}{variant}"), architecture=arch, variant=variant, note=tag)
        for arch, variant in INDEX_PLATFORMS
    )
    return index(manifests), manifests[INDEX_PRESENT:]


def over_shared_layers(tag: str, base: Manifest) -> Manifest:
    """An image with its own manifest and config over the base image's layers (2 own blobs)."""
    return manifest(base.layers, note=tag)


def over_shared_base(tag: str, base: Manifest) -> Manifest:
    """An image with only its own manifest, over the base image's config and layers (1 own blob)."""
    return manifest(base.layers, note=base_note(base), annotations={"org.example.bench": tag})


def base_note(base: Manifest) -> str:
    """The note a manifest's config was built with (so a sibling shares that config)."""
    config = json.loads(base.config.data)
    return str(config["config"]["Labels"].get("note", ""))


class ImageFactory:
    """Writes images through containerd's content and images services, several at a time.

    One lease protects a whole batch until its records exist, instead of one lease per image.
    """

    def __init__(self, address: str, workers: int) -> None:
        self.store = Store(address)
        self.workers = workers

    def close(self) -> None:
        """Close the channel."""
        self.store.close()

    def tag(self) -> str:
        """A tag that makes content unique across the whole run."""
        return f"bench-{next(_unique)}"

    def put(
        self,
        namespace: str,
        images: Sequence[tuple[str, Manifest | Index]],
        missing: Iterable[Manifest] = (),
        *,
        own: Own = Own.ALL,
    ) -> list[BenchImage]:
        """Write each image's own blobs (not `missing` manifests) and create one record per image.

        Blobs that are not the image's own (`own`) must already be held by another image.
        """
        left_out = set(missing)
        with self.store.lease(namespace) as lease:

            def one(entry: tuple[str, Manifest | Index]) -> BenchImage:
                name, image = entry
                if isinstance(image, Index):
                    for each in image.manifests:
                        if each not in left_out:
                            self.store.write_manifest(namespace, each, lease)
                    self.store.write_blob(namespace, image.blob, lease, image.gc_labels())
                elif own is Own.ALL:
                    self.store.write_manifest(namespace, image, lease)
                else:
                    if own is Own.MANIFEST_AND_CONFIG:
                        self.store.write_blob(namespace, image.config, lease)
                    self.store.write_blob(namespace, image.blob, lease, image.gc_labels())
                self.store.create_record(namespace, name, image.blob)
                return BenchImage(name, image.blob.digest, image.blob.size, image.blob.media_type)

            with ThreadPoolExecutor(self.workers) as pool:
                return list(pool.map(one, images))

    def put_records(self, namespace: str, names: Sequence[str], targets: Sequence[BenchImage]) -> None:
        """Records only, each over one of `targets` (round-robin): many names, little content."""

        def one(position: int) -> None:
            target = targets[position % len(targets)]
            image = images_pb2.Image(name=names[position])
            image.target.media_type = target.media_type
            image.target.digest = target.digest
            image.target.size = target.size
            self.store.images.Create(images_pb2.CreateImageRequest(image=image), metadata=self.store.md(namespace))

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(one, range(len(names))))

    def names(self, namespace: str) -> list[str]:
        """Every record of the namespace."""
        return sorted(self.store.names(namespace))

    def clear(self, namespaces: Iterable[str]) -> None:
        """Delete every record left in these namespaces, then wait for one collection pass."""
        for namespace in namespaces:
            for name in self.names(namespace):
                try:
                    self.store.images.Delete(
                        images_pb2.DeleteImageRequest(name=name), metadata=self.store.md(namespace)
                    )
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise
        self.collect_garbage()

    def collect_garbage(self, namespace: str = "bench-gc") -> None:
        """One synchronous collection pass (deleting a lease with sync=true runs one)."""
        lease = f"bench-gc-{next(_unique)}"
        md = self.store.md(namespace)
        self.store.leases.Create(leases_pb2.CreateRequest(id=lease), metadata=md)
        self.store.leases.Delete(leases_pb2.DeleteRequest(id=lease, sync=True), metadata=md)
