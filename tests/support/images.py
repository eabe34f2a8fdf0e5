"""Build real OCI blobs (gzip layers, config, manifest, index) in memory, as a registry pull would bring."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform as host_platform
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


def digest_of(data: bytes) -> str:
    """The sha256 digest of a blob."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_arch() -> str:
    """This machine's architecture in OCI terms, so runc can run the image."""
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(host_platform.machine(), host_platform.machine())


@dataclass(frozen=True)
class Blob:
    """One piece of content with its media type."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Layer:
    """A gzip layer and the digest of its uncompressed tar (the diff ID)."""

    blob: Blob
    diff_id: str


@dataclass(frozen=True)
class Manifest:
    """A single-platform image: manifest, config and layers."""

    blob: Blob
    config: Blob
    layers: tuple[Layer, ...]
    os: str
    architecture: str
    variant: str = ""

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.blob, self.config, *(layer.blob for layer in self.layers))

    def gc_labels(self) -> dict[str, str]:
        labels = {"containerd.io/gc.ref.content.config": self.config.digest}
        for position, layer in enumerate(self.layers):
            labels[f"containerd.io/gc.ref.content.l.{position}"] = layer.blob.digest
        return labels


@dataclass(frozen=True)
class Index:
    """A multi-platform image index over several manifests."""

    blob: Blob
    manifests: tuple[Manifest, ...]

    def gc_labels(self) -> dict[str, str]:
        return {f"containerd.io/gc.ref.content.m.{i}": m.blob.digest for i, m in enumerate(self.manifests)}


@dataclass
class TarBuilder:
    """Files for one layer."""

    files: dict[str, bytes] = field(default_factory=dict)
    executables: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)

    def build(self) -> Layer:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            directories = sorted({str(p) for name in [*self.files, *self.symlinks] for p in Path(name).parents} - {"."})
            for directory in directories:
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for name, data in sorted(self.files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if name in self.executables else 0o644
                tar.addfile(info, io.BytesIO(data))
            for name, target in sorted(self.symlinks.items()):
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
        data = raw.getvalue()
        return Layer(blob=Blob(MEDIA_LAYER, gzip.compress(data, mtime=0)), diff_id=digest_of(data))


def file_layer(name: str, content: bytes) -> Layer:
    """A layer holding one small file: cheap, unique content for images that never run."""
    return TarBuilder(files={name: content}).build()


def busybox_layer(busybox: Path = Path("/bin/busybox")) -> Layer:
    """A layer with a static busybox, so runc can run `sleep` in a container of the image."""
    builder = TarBuilder(files={"bin/busybox": busybox.read_bytes()}, executables={"bin/busybox"})
    for applet in ("sh", "sleep", "true"):
        builder.symlinks[f"bin/{applet}"] = "busybox"
    for directory in ("proc", "dev", "sys", "tmp", "etc"):
        builder.files[f"{directory}/.keep"] = b""
    return builder.build()


def manifest(
    layers: tuple[Layer, ...],
    *,
    os: str = "linux",
    architecture: str | None = None,
    variant: str = "",
    note: str = "",
    annotations: dict[str, str] | None = None,
) -> Manifest:
    """A manifest and config over the layers; `note` makes otherwise equal images distinct."""
    architecture = architecture or host_arch()
    config_json: dict[str, object] = {
        "architecture": architecture,
        "os": os,
        "config": {"Cmd": ["/bin/sh"], "Labels": {"note": note} if note else {}},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    if variant:
        config_json["variant"] = variant
    config = Blob(MEDIA_CONFIG, json.dumps(config_json, sort_keys=True).encode())
    body = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.blob.descriptor() for layer in layers],
    }
    if annotations:
        body["annotations"] = annotations
    return Manifest(
        blob=Blob(MEDIA_MANIFEST, json.dumps(body, sort_keys=True).encode()),
        config=config,
        layers=layers,
        os=os,
        architecture=architecture,
        variant=variant,
    )


def index(manifests: tuple[Manifest, ...]) -> Index:
    """An OCI index naming each manifest with its platform."""
    entries = []
    for m in manifests:
        plat: dict[str, str] = {"os": m.os, "architecture": m.architecture}
        if m.variant:
            plat["variant"] = m.variant
        entries.append(m.blob.descriptor(platform=plat))
    body = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
    return Index(blob=Blob(MEDIA_INDEX, json.dumps(body, sort_keys=True).encode()), manifests=manifests)
