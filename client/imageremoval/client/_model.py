"""The plain values the client takes and returns, so callers never handle protobuf messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
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


class RemovedItems(list[RemovedItem]):
    """What a removal did, in order; `truncated` when the server had to leave untagged names out of the list
    to fit its message limit (then `untagged_count` and `deleted_count` give the exact numbers)."""

    truncated: bool = False
    untagged_count: int = 0
    deleted_count: int = 0


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS for the channel: the CA that signed the server, and for mutual TLS this client's certificate."""

    ca: bytes | None = None  # None: the system's roots
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None  # when the certificate names another host than the target

    @classmethod
    def from_files(
        cls, ca: str | None = None, cert: str | None = None, key: str | None = None, server_name: str | None = None
    ) -> Tls:
        """Read PEM files; (cert, key) go together."""
        if (cert is None) != (key is None):
            raise ValueError("a client certificate and its key go together")

        def read(path: str | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return cls(ca=read(ca), cert=read(cert), key=read(key), server_name=server_name)
