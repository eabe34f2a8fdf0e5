"""What a reference resolves to, through the port: names, short and full IDs, and what is ambiguous."""

from __future__ import annotations

import pytest

from imageremoval.server.domain.errors import ImageNotFound, InvalidArgument, Reason
from imageremoval.server.domain.model import Descriptor
from imageremoval.server.domain.references import parse_reference
from imageremoval.server.removal.resolve import resolve

from .support.fake_store import MEDIA_MANIFEST, FakeStore


def _two_images(store: FakeStore) -> tuple[str, str]:
    first = store.tag("docker.io/library/first:latest", store.put_manifest(["sha256:" + "1" * 64], note="1"))
    second = store.tag("docker.io/library/second:1", store.put_manifest(["sha256:" + "2" * 64], note="2"))
    return first.image_id, second.image_id


async def test_a_name_resolves_to_every_record_of_its_image_and_its_children() -> None:
    store = FakeStore()
    first, _ = _two_images(store)
    store.tag("docker.io/library/again:latest", store.records["docker.io/library/first:latest"].target)
    child = store.tag("docker.io/library/child:latest", store.put_manifest(["sha256:" + "3" * 64]), parent=first)
    resolution = await resolve(store, parse_reference("first"))
    assert resolution.image_id == first
    assert {r.name for r in resolution.all} == {"docker.io/library/first:latest", "docker.io/library/again:latest"}
    assert resolution.children == (child,)


async def test_a_short_id_resolves_by_prefix() -> None:
    store = FakeStore()
    first, _ = _two_images(store)
    resolution = await resolve(store, parse_reference(first[7:19]))
    assert resolution.image_id == first and resolution.named is None


async def test_a_short_id_two_images_share_is_ambiguous() -> None:
    store = FakeStore()
    for n in (1, 2):
        store.tag(f"docker.io/library/prefix:{n}", Descriptor(MEDIA_MANIFEST, "sha256:abcdef" + str(n) * 58, 1))
    with pytest.raises(InvalidArgument) as caught:
        await resolve(store, parse_reference("abcdef"))
    assert caught.value.reason is Reason.AMBIGUOUS_REFERENCE
    assert (await resolve(store, parse_reference("abcdef1"))).image_id == "sha256:abcdef" + "1" * 58


async def test_a_repository_named_like_a_short_id_of_another_image_is_ambiguous() -> None:
    store = FakeStore()
    first, second = _two_images(store)
    store.tag(f"docker.io/library/{first[7:19]}:latest", store.records["docker.io/library/second:1"].target)
    with pytest.raises(InvalidArgument) as caught:
        await resolve(store, parse_reference(first[7:19]))
    assert caught.value.reason is Reason.AMBIGUOUS_REFERENCE
    assert second  # the name points at the second image


async def test_an_unknown_name_or_id_is_not_found() -> None:
    store = FakeStore()
    _two_images(store)
    for typed in ("missing", "abcdef123456", "sha256:" + "f" * 64):
        with pytest.raises(ImageNotFound):
            await resolve(store, parse_reference(typed))
