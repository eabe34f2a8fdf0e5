"""containerd's namespace naming rule, checked before any call so a bad name is refused with our reason."""

from __future__ import annotations

import re

_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
NAMESPACE_MAX_LENGTH = 76


def is_valid_namespace(namespace: str) -> bool:
    """Whether containerd would accept this namespace name."""
    return len(namespace) <= NAMESPACE_MAX_LENGTH and _NAMESPACE.fullmatch(namespace) is not None
