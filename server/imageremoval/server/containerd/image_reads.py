"""The removal's image read questions, answered by containerd directly or by the coherent index."""

from __future__ import annotations

from imageremoval.server.containerd.client import ContainerdClient, quote
from imageremoval.server.containerd.image_index import ImageIndex
from imageremoval.server.containerd.index_table import ImageTable
from imageremoval.server.domain.errors import NotFoundInContainerd
from imageremoval.server.domain.model import LABEL_PARENT, ImageRecord


class DirectImageReads:
    """Each question is one containerd call (a filtered List scans the whole namespace)."""

    def __init__(self, client: ContainerdClient, namespace: str) -> None:
        self._client = client
        self._namespace = namespace

    async def get_image(self, name: str) -> ImageRecord:
        return await self._client.get_image(self._namespace, name)

    async def related(self, digest: str) -> list[ImageRecord]:
        return await self._client.list_images(
            self._namespace, [f"target.digest=={quote(digest)}", f"labels.{quote(LABEL_PARENT)}=={quote(digest)}"]
        )

    async def by_id_prefix(self, hex_prefix: str, name: str) -> list[ImageRecord]:
        pattern = f"^sha256:{hex_prefix}[0-9a-f]{{{64 - len(hex_prefix)}}}$"
        return await self._client.list_images(
            self._namespace, [f"name=={quote(name)}", f"target.digest~={quote(pattern)}"]
        )


class TableImageReads:
    """The same questions answered from a table the index returned after a barrier (no containerd call)."""

    def __init__(self, table: ImageTable) -> None:
        self._table = table

    async def get_image(self, name: str) -> ImageRecord:
        found = self._table.get(name)
        if found is None:
            raise NotFoundInContainerd(f"images.get: image {name!r} not found (index)")
        return found

    async def related(self, digest: str) -> list[ImageRecord]:
        return self._table.related(digest)

    async def by_id_prefix(self, hex_prefix: str, name: str) -> list[ImageRecord]:
        return self._table.by_id_prefix(hex_prefix, name)


async def image_reads(
    client: ContainerdClient, index: ImageIndex | None, namespace: str
) -> DirectImageReads | TableImageReads:
    """Reads as of now: the index's table after a barrier, else containerd itself."""
    table = None if index is None else await index.table(namespace)
    return DirectImageReads(client, namespace) if table is None else TableImageReads(table)
