"""The operator's rules for a removal: namespaces a caller may touch, protected images, load and deadlines."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .config import is_valid_namespace
from .errors import DeadlineExceeded, ImageProtected, InvalidArgument, NamespaceNotAllowed, Reason, TooManyRemovals
from .model import ImageRecord
from .references import familiar_name

PINNED_LABEL = "io.cri-containerd.pinned"


@dataclass(frozen=True)
class RemovalPolicy:
    """Checked by the remover before anything changes; the defaults allow everything but pinned images."""

    allowed_namespaces: frozenset[str] | None = None
    identity_namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    protected_patterns: tuple[str, ...] = ()
    allow_force_protected: bool = False
    max_concurrent: int = 32
    min_deadline_s: float = 0.0

    def check_namespace(self, namespace: str, identities: Sequence[str]) -> None:
        """A name containerd accepts, on the server's allow-list, and (with mutual TLS) the client's to touch."""
        if not is_valid_namespace(namespace):
            shown = namespace if len(namespace) <= 80 else namespace[:80] + "..."
            raise InvalidArgument(Reason.INVALID_NAMESPACE, f"invalid namespace {shown!r}", {"namespace": shown})
        if self.allowed_namespaces is not None and namespace not in self.allowed_namespaces:
            raise NamespaceNotAllowed(
                f"namespace {namespace!r} is not allowed on this server", {"namespace": namespace}
            )
        if not self.identity_namespaces:
            return
        if any(namespace in self.identity_namespaces.get(i, frozenset()) for i in identities):
            return
        shown = identities[0] if identities else "(no client certificate)"
        raise NamespaceNotAllowed(
            f"client {shown} may not remove images in namespace {namespace!r}",
            {"namespace": namespace, "identity": shown},
        )

    def check_deadline(self, deadline: float | None) -> None:
        """Refuse work that cannot finish: too little time left to start, or none left to mutate."""
        if deadline is None:
            return
        left = deadline - time.monotonic()
        if left < self.min_deadline_s or left <= 0:
            raise DeadlineExceeded(
                f"too little time left ({max(left, 0) * 1000:.0f} ms); nothing was changed",
                {"remainingMs": str(max(int(left * 1000), 0))},
            )

    def check_protected(self, records: Sequence[ImageRecord], *, force: bool, display: str) -> None:
        """Pinned (CRI) images and protected names stay, unless the server lets force remove them."""
        if force and self.allow_force_protected:
            return
        for record in records:
            rule = ""
            if record.labels.get(PINNED_LABEL) == "pinned":
                rule = f"label {PINNED_LABEL}=pinned"
            else:
                familiar = familiar_name(record.name)
                rule = next(
                    (
                        p
                        for p in self.protected_patterns
                        if fnmatch.fnmatchcase(record.name, p) or fnmatch.fnmatchcase(familiar, p)
                    ),
                    "",
                )
            if rule:
                hint = "; the server lets force remove it" if self.allow_force_protected else ""
                raise ImageProtected(
                    f"image {display} is protected ({rule}){hint}",
                    {"imageId": record.image_id, "reference": display, "rule": rule},
                )


class ConcurrencyLimit:
    """Counts removals in flight; beyond the limit a call is refused at once rather than queued."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight = 0

    def __enter__(self) -> ConcurrencyLimit:
        if self._in_flight >= self._limit:
            raise TooManyRemovals(
                f"too many removals in flight ({self._limit}); retry later", {"limit": str(self._limit)}
            )
        self._in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._in_flight -= 1
