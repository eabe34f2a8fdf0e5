"""Parse image references the way Docker does, so users type what they would type to `docker rmi`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from docker_image.reference import InvalidReference as _LibraryInvalidReference
from docker_image.reference import Reference as _LibraryReference

from imageremoval.server.domain.errors import InvalidArgument, Reason

DANGLING_PREFIX = "moby-dangling@"
DEFAULT_TAG = "latest"
MAX_REFERENCE_LENGTH = 512
_ID_LIKE = re.compile(r"(sha256:)?([a-f0-9]{4,64})")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_DEFAULT_DOMAIN = "docker.io"
_OFFICIAL_PREFIX = "library/"


@dataclass(frozen=True, slots=True)
class IdReference:
    """An image ID or a prefix of one (`sha256:<hex>` or `<hex>`, 4 to 64 hex digits)."""

    text: str
    hex: str

    @property
    def dangling_name(self) -> str | None:
        """The record name when the user typed a dangling record's name (`moby-dangling@<digest>`)."""
        return self.text if self.text.startswith(DANGLING_PREFIX) else None

    @property
    def full_digest(self) -> str | None:
        """The complete digest when all 64 hex digits were given."""
        return f"sha256:{self.hex}" if len(self.hex) == 64 else None

    @property
    def lookalike_name(self) -> str:
        """The name a short hex string has if it is a repository (`docker.io/library/<hex>:latest`)."""
        return f"{_DEFAULT_DOMAIN}/{_OFFICIAL_PREFIX}{self.hex}:{DEFAULT_TAG}"


@dataclass(frozen=True, slots=True)
class NameReference:
    """A normalised image name: repository plus a tag, a digest, or both."""

    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The fully normalised name containerd stores (`docker.io/library/busybox:latest`)."""
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> str:
        """The short form Docker prints (`busybox:latest`)."""
        text = familiar_repository(self.repository)
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


Reference = IdReference | NameReference


def is_digest(text: str) -> bool:
    """Whether text is a complete sha256 digest."""
    return _DIGEST.fullmatch(text) is not None


def familiar_repository(repository: str) -> str:
    """Drop Docker Hub's implicit domain and `library/` prefix, as `reference.FamiliarName` does."""
    domain, _, path = repository.partition("/")
    if domain != _DEFAULT_DOMAIN or not path:
        return repository
    if path.startswith(_OFFICIAL_PREFIX) and "/" not in path[len(_OFFICIAL_PREFIX) :]:
        return path[len(_OFFICIAL_PREFIX) :]
    return path


def parse_reference(text: str) -> Reference:
    """Parse what the user typed: ID-like strings are IDs, everything else a normalised name."""
    if not text:
        raise InvalidArgument(Reason.INVALID_REFERENCE, "invalid reference format: image reference is empty")
    if len(text) > MAX_REFERENCE_LENGTH or not text.isprintable() or not text.isascii():
        raise InvalidArgument(
            Reason.INVALID_REFERENCE,
            f"invalid reference format: not a valid image reference ({len(text)} characters)",
            {"length": str(len(text))},
        )
    if text.startswith(DANGLING_PREFIX) and is_digest(text[len(DANGLING_PREFIX) :]):
        return IdReference(text=text, hex=text[len(DANGLING_PREFIX) + len("sha256:") :])
    id_match = _ID_LIKE.fullmatch(text)
    if id_match is not None:
        return IdReference(text=text, hex=id_match.group(2))
    return parse_name(text)


def parse_name(text: str) -> NameReference:
    """Normalise a name (`busybox` -> `docker.io/library/busybox:latest`); reject invalid syntax."""
    try:
        parsed = _LibraryReference.parse_normalized_named(text)
    except _LibraryInvalidReference as exc:
        detail = str(exc).removeprefix("invalid reference format: ")
        raise InvalidArgument(
            Reason.INVALID_REFERENCE, f"invalid reference format: {detail}", {"reference": _clip(text)}
        ) from None
    except Exception as exc:
        raise InvalidArgument(
            Reason.INVALID_REFERENCE, f"invalid reference format: {exc}", {"reference": _clip(text)}
        ) from None
    repository = str(parsed["name"])
    tag = parsed["tag"]
    digest = parsed["digest"]
    if digest is not None and not is_digest(str(digest)):
        raise InvalidArgument(
            Reason.INVALID_REFERENCE,
            "invalid reference format: only sha256 digests are supported",
            {"reference": _clip(text)},
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return NameReference(
        repository=repository,
        tag=None if tag is None else str(tag),
        digest=None if digest is None else str(digest),
    )


def parse_stored_name(name: str) -> NameReference | None:
    """Parse a name as containerd stores it; None for dangling records and names Docker would ignore."""
    if name.startswith(DANGLING_PREFIX):
        return None
    try:
        parsed = _LibraryReference.parse_normalized_named(name)
    except Exception:
        return None
    tag = parsed["tag"]
    digest = parsed["digest"]
    reference = NameReference(
        repository=str(parsed["name"]),
        tag=None if tag is None else str(tag),
        digest=None if digest is None else str(digest),
    )
    # Like distribution's strict ParseNamed: only a fully normalised name is a name (not `busybox`, `sha256:..`).
    return reference if reference.name == name else None


def is_dangling(name: str) -> bool:
    """Whether a record only keeps content alive (`moby-dangling@<digest>`)."""
    return name.startswith(DANGLING_PREFIX)


def dangling_name(image_id: str) -> str:
    """The dangling record's name for an image: unique per digest, so concurrent creators agree."""
    return f"{DANGLING_PREFIX}{image_id}"


def familiar_name(stored: str) -> str:
    """The familiar form of a stored name; names that do not parse are shown as stored."""
    parsed = parse_stored_name(stored)
    return stored if parsed is None else parsed.familiar


def short_id(image_id: str) -> str:
    """The 12-hex-digit form Docker prints (`stringid.TruncateID`)."""
    return image_id.removeprefix("sha256:")[:12]


def _clip(text: str, limit: int = 128) -> str:
    """Bound user input echoed back in errors and logs."""
    return text if len(text) <= limit else text[:limit] + "..."
