"""Docker's "same references" table (moby's getSameReferences), as a pure function."""

from __future__ import annotations

from imageremoval.server.domain.docker_rules import DeleteImage, Resolution, Untag, decide, same_references
from imageremoval.server.domain.model import Descriptor, ImageRecord
from imageremoval.server.domain.references import parse_name

DIGEST = "sha256:" + "cd" * 32
TARGET = Descriptor("application/vnd.oci.image.manifest.v1+json", DIGEST, 100)


def records(*names: str) -> tuple[ImageRecord, ...]:
    return tuple(ImageRecord(name, TARGET) for name in names)


def names(found: list[ImageRecord]) -> list[str]:
    return [r.name for r in found]


def test_same_repository_and_tag_only() -> None:
    all_refs = records("docker.io/library/a:1", "docker.io/library/a:2", "docker.io/library/b:1")
    assert names(same_references(parse_name("a:1"), all_refs)) == ["docker.io/library/a:1"]


def test_digest_reference_matches_every_tag_of_its_repository() -> None:
    all_refs = records("docker.io/library/a:1", "docker.io/library/a:2", "docker.io/library/b:1")
    assert names(same_references(parse_name(f"a@{DIGEST}"), all_refs)) == [
        "docker.io/library/a:1",
        "docker.io/library/a:2",
    ]


def test_digest_only_records_count_when_no_other_tag_remains() -> None:
    all_refs = records("docker.io/library/a:1", f"docker.io/library/a@{DIGEST}")
    assert names(same_references(parse_name("a:1"), all_refs)) == [
        "docker.io/library/a:1",
        f"docker.io/library/a@{DIGEST}",
    ]


def test_digest_only_records_stay_while_another_tag_remains() -> None:
    all_refs = records("docker.io/library/a:1", f"docker.io/library/a@{DIGEST}", "docker.io/library/a:2")
    assert names(same_references(parse_name("a:1"), all_refs)) == ["docker.io/library/a:1"]


def test_dangling_records_always_count() -> None:
    all_refs = records("docker.io/library/a:1", f"moby-dangling@{DIGEST}")
    assert names(same_references(parse_name("a:1"), all_refs)) == [
        "docker.io/library/a:1",
        f"moby-dangling@{DIGEST}",
    ]


def test_one_name_of_two_untags_and_the_last_name_deletes() -> None:
    two = records("docker.io/library/a:1", "docker.io/library/b:1")
    res = Resolution(DIGEST, two[0], two, parse_name("a:1"), "a:1")
    assert isinstance(decide(res, force=False, by_id=False), Untag)
    one = records("docker.io/library/a:1")
    res = Resolution(DIGEST, one[0], one, parse_name("a:1"), "a:1")
    decision = decide(res, force=False, by_id=False)
    assert isinstance(decision, DeleteImage) and decision.by_name == one[0]


def test_an_id_naming_several_repositories_needs_force() -> None:
    two = records("docker.io/library/a:1", "docker.io/library/b:1")
    res = Resolution(DIGEST, None, two, None, "cdcd")
    decision = decide(res, force=False, by_id=True)
    assert isinstance(decision, DeleteImage) and decision.check_multiple
    forced = decide(res, force=True, by_id=True)
    assert isinstance(forced, DeleteImage) and not forced.check_multiple and not forced.check_stopped
