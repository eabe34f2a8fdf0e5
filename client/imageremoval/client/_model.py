"""The plain values the client takes and returns, so callers never handle protobuf messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# One platform component: what containerd's platform specifiers allow, before normalisation.
_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class Platform:
    """One platform of a multi-platform image, as in the OCI image index (`linux/arm64/v8`)."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os/architecture[/variant]`; raise ValueError on anything else."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(_COMPONENT.fullmatch(part) for part in parts):
            raise ValueError(f"invalid platform {text!r}: expected os/architecture[/variant], e.g. linux/arm64/v8")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}/{self.variant}" if self.variant else f"{self.os}/{self.architecture}"


@dataclass(frozen=True, slots=True)
class RemovedItem:
    """One thing a removal did: untag a name or delete an image, as `docker rmi` prints it."""

    kind: Literal["untagged", "deleted"]
    value: str

    def __str__(self) -> str:
        return f"{'Untagged' if self.kind == 'untagged' else 'Deleted'}: {self.value}"
