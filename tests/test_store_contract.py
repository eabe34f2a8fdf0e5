"""The ImageStore port's contract, run on the unit tests' FakeStore and on containerd alike: the fake cannot drift."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest

from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.domain.errors import ImageNotFound, InvalidArgument, NotFoundInContainerd, Reason
from imageremoval.server.domain.model import LABEL_PARENT, Descriptor, ImageRecord
from imageremoval.server.domain.references import parse_reference
from imageremoval.server.domain.store import ImageStore
from imageremoval.server.removal.resolve import resolve

from .support.fake_store import MEDIA_MANIFEST, FakeStore

FIRST = "sha256:" + "1a" * 32
SECOND = "sha256:" + "2b" * 32
CHILD = "sha256:" + "3c" * 32


class Port:
    """The store under test, and whether it is containerd 1.x (which ignores a delete's expected target)."""

    def __init__(self, store: ImageStore, *, ignores_delete_target: bool) -> None:
        self.store = store
        self.ignores_delete_target = ignores_delete_target

    async def tag(self, name: str, digest: str, *, parent: str = "") -> ImageRecord:
        """A record made through the port itself (records only: resolve never reads content)."""
        record = ImageRecord(name, Descriptor(MEDIA_MANIFEST, digest, 1), {LABEL_PARENT: parent} if parent else {})
        await self.store.create_image(record)
        return record


@pytest.fixture(params=["fake", "containerd"])
async def port(request: pytest.FixtureRequest) -> AsyncIterator[Port]:
    if request.param == "fake":
        yield Port(FakeStore(), ignores_delete_target=False)
        return
    containerd: PrivateContainerd = request.getfixturevalue("containerd")
    namespace: str = request.getfixturevalue("ns")
    assert containerd.version is not None
    client = ContainerdClient.connect(containerd.address)
    store = client.scope(namespace)
    try:
        yield Port(store, ignores_delete_target=containerd.version.major < 2)
    finally:
        for record in await store.images():  # records without content: the namespace's own check would flag them
            await store.delete_image(record, sync=False)
        await client.close()


def test_the_fake_has_every_method_of_the_port_with_the_same_parameters() -> None:
    port_methods = {n: m for n, m in vars(ImageStore).items() if inspect.isfunction(m) and not n.startswith("_")}
    assert "resolve" not in port_methods and "delete_image" in port_methods
    for name, method in port_methods.items():
        fake = getattr(FakeStore, name, None)
        assert fake is not None, f"FakeStore lacks {name}"
        assert list(inspect.signature(fake).parameters) == list(inspect.signature(method).parameters), name
        assert inspect.iscoroutinefunction(fake) == inspect.iscoroutinefunction(method), name


async def test_a_name_resolves_to_every_record_of_its_image_and_its_children(port: Port) -> None:
    await port.tag("docker.io/library/first:latest", FIRST)
    await port.tag("docker.io/library/again:latest", FIRST)
    await port.tag("docker.io/library/second:1", SECOND)
    child = await port.tag("docker.io/library/child:latest", CHILD, parent=FIRST)
    resolution = await resolve(port.store, parse_reference("first"))
    assert resolution.image_id == FIRST
    assert {r.name for r in resolution.all} == {"docker.io/library/first:latest", "docker.io/library/again:latest"}
    assert resolution.children is not None and [r.name for r in resolution.children] == [child.name]


async def test_a_short_id_resolves_by_prefix(port: Port) -> None:
    await port.tag("docker.io/library/first:latest", FIRST)
    await port.tag("docker.io/library/second:1", SECOND)
    resolution = await resolve(port.store, parse_reference(FIRST[7:19]))
    assert resolution.image_id == FIRST and resolution.named is None


async def test_a_short_id_two_images_share_is_ambiguous(port: Port) -> None:
    for n in (1, 2):
        await port.tag(f"docker.io/library/prefix:{n}", "sha256:abcdef" + str(n) * 58)
    with pytest.raises(InvalidArgument) as caught:
        await resolve(port.store, parse_reference("abcdef"))
    assert caught.value.reason is Reason.AMBIGUOUS_REFERENCE
    assert (await resolve(port.store, parse_reference("abcdef1"))).image_id == "sha256:abcdef" + "1" * 58


async def test_a_repository_named_like_a_short_id_of_another_image_is_ambiguous(port: Port) -> None:
    await port.tag("docker.io/library/first:latest", FIRST)
    await port.tag(f"docker.io/library/{FIRST[7:19]}:latest", SECOND)
    with pytest.raises(InvalidArgument) as caught:
        await resolve(port.store, parse_reference(FIRST[7:19]))
    assert caught.value.reason is Reason.AMBIGUOUS_REFERENCE


async def test_an_unknown_name_or_id_is_not_found(port: Port) -> None:
    await port.tag("docker.io/library/first:latest", FIRST)
    for typed in ("missing", "abcdef123456", "sha256:" + "f" * 64):
        with pytest.raises(ImageNotFound):
            await resolve(port.store, parse_reference(typed))


async def test_a_delete_whose_expected_target_moved(port: Port) -> None:
    """containerd 2 refuses it as not found, and so does the fake; containerd 1.6 ignores the target and deletes
    the re-pointed record (why the remover re-reads right before its delete)."""
    name = "docker.io/library/moving:latest"
    seen = await port.tag(name, FIRST)
    await port.store.delete_image(seen, sync=False)
    await port.tag(name, SECOND)  # re-pointed by someone else after `seen` was read
    if port.ignores_delete_target:
        await port.store.delete_image(seen, sync=False)
        assert await port.store.image(name) is None
    else:
        with pytest.raises(NotFoundInContainerd):
            await port.store.delete_image(seen, sync=False)
        current = await port.store.image(name)
        assert current is not None and current.image_id == SECOND
