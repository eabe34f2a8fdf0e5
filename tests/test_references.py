"""Reference parsing: what users type to `docker rmi` means the same here (unit tests of pure functions)."""

from __future__ import annotations

import pytest

from imageremoval.server.domain.errors import InvalidArgument, Reason
from imageremoval.server.domain.references import (
    IdReference,
    NameReference,
    familiar_name,
    parse_reference,
    short_id,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1"),
        ("example.com/a/b:1", "example.com/a/b:1"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    ],
)
def test_names_are_normalised_like_docker(typed: str, stored: str) -> None:
    parsed = parse_reference(typed)
    assert isinstance(parsed, NameReference)
    assert parsed.name == stored


@pytest.mark.parametrize(
    ("typed", "hex_part"),
    [("abcd", "abcd"), ("sha256:abcd", "abcd"), (DIGEST, "ab" * 32), ("ab" * 32, "ab" * 32)],
)
def test_hex_strings_are_id_like(typed: str, hex_part: str) -> None:
    parsed = parse_reference(typed)
    assert isinstance(parsed, IdReference)
    assert parsed.hex == hex_part


def test_a_full_id_has_a_full_digest_and_a_short_one_does_not() -> None:
    assert parse_reference(DIGEST) == IdReference(DIGEST, "ab" * 32)
    full = parse_reference(DIGEST)
    assert isinstance(full, IdReference) and full.full_digest == DIGEST
    short = parse_reference("abcd")
    assert isinstance(short, IdReference) and short.full_digest is None


def test_three_hex_digits_are_a_name_not_an_id() -> None:
    assert isinstance(parse_reference("abc"), NameReference)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Busybox",
        "busybox:",
        "busy box",
        "busybox@sha256:123",
        "busybox@md5:" + "a" * 32,
        "a" * 100_000,
        "name\x00with-nul",
        "ünïcode",
        "-leading-dash",
    ],
)
def test_invalid_references_are_invalid_argument(bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_reference(bad)
    assert caught.value.reason is Reason.INVALID_REFERENCE
    assert len(caught.value.message) < 600  # huge input is never echoed back whole


@pytest.mark.parametrize(
    ("stored", "familiar"),
    [
        ("docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/user/app:v1", "user/app:v1"),
        ("example.com/a/b:1", "example.com/a/b:1"),
        (f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"moby-dangling@{DIGEST}", f"moby-dangling@{DIGEST}"),
    ],
)
def test_familiar_names_are_what_docker_prints(stored: str, familiar: str) -> None:
    assert familiar_name(stored) == familiar


def test_short_id_is_twelve_hex_digits() -> None:
    assert short_id(DIGEST) == "ab" * 6
