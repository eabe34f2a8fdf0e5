"""Platform selection through the port: which present manifests a list of platforms names, and what it refuses."""

from __future__ import annotations

import pytest

from imageremoval.server.domain.content import ImageContent
from imageremoval.server.domain.errors import InvalidArgument, PlatformNotFound, PlatformShared, Reason
from imageremoval.server.domain.platforms import MAX_PLATFORMS, PlatformSpec, choose, validate_platforms
from imageremoval.server.removal.content_walk import walk_present

from .support.fake_store import FakeStore

AMD = {"os": "linux", "architecture": "amd64"}
ARM = {"os": "linux", "architecture": "arm64", "variant": "v8"}
S390 = {"os": "linux", "architecture": "s390x"}


async def _multi(store: FakeStore, *, shared: bool = False) -> ImageContent:
    """amd64 and arm64 present, s390x listed but never pulled; with `shared`, one manifest serves both."""
    amd = store.put_manifest(["sha256:" + "a" * 64], architecture="amd64")
    arm = amd if shared else store.put_manifest(["sha256:" + "b" * 64], architecture="arm64")
    absent = store.put_manifest(["sha256:" + "c" * 64], architecture="s390x")
    del store.blobs[absent.digest]
    index = store.put_index([(amd, AMD), (arm, ARM), (absent, S390)])
    store.tag("docker.io/library/multi:latest", index)
    return await walk_present(store, index)


async def test_arm64_without_a_variant_names_the_v8_manifest() -> None:
    content = await _multi(FakeStore())
    [chosen] = choose(content, [PlatformSpec("linux", "arm64")], display="multi", image_id="id")
    assert chosen.descriptor.digest == content.entries[1][0].digest


async def test_a_platform_whose_manifest_was_never_pulled_is_not_found() -> None:
    content = await _multi(FakeStore())
    with pytest.raises(PlatformNotFound):
        choose(content, [PlatformSpec("linux", "s390x")], display="multi", image_id="id")


async def test_a_manifest_serving_another_platform_too_is_refused_unless_both_are_named() -> None:
    content = await _multi(FakeStore(), shared=True)
    with pytest.raises(PlatformShared) as caught:
        choose(content, [PlatformSpec("linux", "amd64")], display="multi", image_id="id")
    assert caught.value.metadata["platform"] == "linux/arm64/v8"
    both = choose(content, [PlatformSpec("linux", "amd64"), PlatformSpec("linux", "arm64")], display="m", image_id="i")
    assert len(both) == 1


def test_removing_platforms_needs_force() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_platforms([PlatformSpec("linux", "amd64")], force=False)
    assert caught.value.reason is Reason.FORCE_REQUIRED
    validate_platforms([PlatformSpec("linux", "amd64")], force=True)


@pytest.mark.parametrize(
    "platforms",
    [[PlatformSpec("Linux", "amd64")], [PlatformSpec("linux", "amd64", "v/8")], [PlatformSpec("linux", "x")] * 65],
)
def test_malformed_or_too_many_platforms_are_invalid(platforms: list[PlatformSpec]) -> None:
    assert MAX_PLATFORMS == 64
    with pytest.raises(InvalidArgument) as caught:
        validate_platforms(platforms, force=True)
    assert caught.value.reason is Reason.INVALID_PLATFORM
