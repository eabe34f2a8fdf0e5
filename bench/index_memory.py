"""Bytes per image the image index holds: `python -m bench.index_memory [N]`, records shaped as containerd's."""

from __future__ import annotations

import hashlib
import sys
import tracemalloc

from imageremoval.server.containerd.index_table import ImageTable
from imageremoval.server.domain.model import Descriptor, ImageRecord

_MEDIA = "application/vnd.oci.image.manifest.v1+json"


def _record(k: int) -> ImageRecord:
    """One record as the adapter builds it from Images.List: its own target, a name, two usage labels."""
    digest = "sha256:" + hashlib.sha256(str(k).encode()).hexdigest()
    labels = {"imageremoval.io/first-seen": "2026-12-01T10:00:00Z", "imageremoval.io/last-used": "2026-12-01T11:00:00Z"}
    return ImageRecord(f"docker.io/library/app-{k}:v{k % 7}", Descriptor(_MEDIA, digest, 1234), labels, k)


def measure(count: int) -> int:
    """Bytes the table and its records hold for `count` images (each with its own target: the worst case)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = ImageTable(_record(k) for k in range(count))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(table) == count
    return held


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    held = measure(count)
    print(f"{count} images: {held / 1e6:.1f} MB held by the index, {held / count:.0f} bytes per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
