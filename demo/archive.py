"""Sample images as an OCI archive that `ctr images import` reads, built from Debian's static busybox."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path

from tests.support.images import MEDIA_INDEX, Blob, Manifest, busybox_layer, file_layer, manifest

# containerd's own export names each image with this annotation; its import reads it back.
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


def sample(note: str, busybox: Path = Path("/bin/busybox")) -> Manifest:
    """A busybox image that can run `sleep`; `note`, in a layer of its own, makes its ID and its layer chain
    distinct (images sharing a chain would all count as used by a container of any of them)."""
    return manifest((busybox_layer(busybox), file_layer("etc/sample", note.encode())), note=note)


def write_archive(path: Path, images: Mapping[str, Manifest]) -> Path:
    """An OCI image layout in a tar: one index entry per name (several names may share a manifest)."""
    blobs: dict[str, Blob] = {}
    entries = []
    for name, image in images.items():
        for blob in image.blobs:
            blobs[blob.digest] = blob
        tag = name.rpartition(":")[2]
        entries.append(image.blob.descriptor(annotations={NAME_ANNOTATION: name, REF_ANNOTATION: tag}))
    index = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}, sort_keys=True)
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index.encode()}
    files.update({f"blobs/sha256/{d.removeprefix('sha256:')}": b.data for d, b in blobs.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
