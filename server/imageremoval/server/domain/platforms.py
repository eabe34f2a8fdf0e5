"""Platform-selective removal (Docker API 1.50): which present manifests a list of platforms names."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imageremoval.server.domain.content import ImageContent, PlatformManifest
from imageremoval.server.domain.errors import InvalidArgument, PlatformNotFound, PlatformShared, Reason

_PART = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
MAX_PLATFORMS = 64


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """One platform to remove: os/architecture[/variant]."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


def _variant(architecture: str, variant: str) -> str:
    """containerd's platform normalisation for the variants that have a default."""
    if architecture == "arm64" and variant in {"", "v8"}:
        return "v8"
    if architecture == "arm" and variant == "":
        return "v7"
    return variant


def platform_matches(spec: PlatformSpec, platform: Mapping[str, str]) -> bool:
    """Strict match of an index entry's platform against the requested one."""
    return (
        platform.get("os", "") == spec.os
        and platform.get("architecture", "") == spec.architecture
        and _variant(spec.architecture, platform.get("variant", "")) == _variant(spec.architecture, spec.variant)
    )


def validate_platforms(platforms: Sequence[PlatformSpec], force: bool) -> None:
    """Platform-selective removal needs force and well-formed platforms."""
    if not platforms:
        return
    if len(platforms) > MAX_PLATFORMS:
        raise InvalidArgument(Reason.INVALID_PLATFORM, f"at most {MAX_PLATFORMS} platforms per call")
    for spec in platforms:
        parts = [spec.os, spec.architecture] + ([spec.variant] if spec.variant else [])
        if not all(_PART.fullmatch(part) for part in parts):
            raise InvalidArgument(
                Reason.INVALID_PLATFORM,
                f"invalid platform: expected os/architecture[/variant] in lowercase, got {str(spec)[:100]!r}",
            )
    if not force:
        raise InvalidArgument(
            Reason.FORCE_REQUIRED,
            "removing specific platforms requires force: their content may be shared with other images",
            {"platforms": ",".join(str(p) for p in platforms)},
        )


def choose(
    content: ImageContent, platforms: Sequence[PlatformSpec], *, display: str, image_id: str
) -> list[PlatformManifest]:
    """The present manifest for each platform; refuse one the index also lists for a platform that stays."""
    present = {m.descriptor.digest: m for m in content.manifests}
    chosen: list[PlatformManifest] = []
    for spec in platforms:
        digest = next((d.digest for d, p in content.entries if d.digest in present and platform_matches(spec, p)), None)
        if digest is None:
            raise PlatformNotFound(display, str(spec), image_id)
        if present[digest] not in chosen:
            chosen.append(present[digest])
    removed = {m.descriptor.digest for m in chosen}
    for descriptor, platform in content.entries:
        if descriptor.digest in removed and not any(platform_matches(spec, platform) for spec in platforms):
            shared = "/".join(
                v for v in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if v
            )
            raise PlatformShared(
                f"cannot remove the requested platforms of {display}: their manifest {descriptor.digest} also "
                f"serves platform {shared}, which would go too; name it as well",
                {"imageId": image_id, "manifest": descriptor.digest, "platform": shared},
            )
    return chosen
