"""What a caller asks RemoveImage for, in domain terms, and where its answer is kept for a retry."""

from __future__ import annotations

from dataclasses import dataclass

from imageremoval.server.domain.errors import InvalidArgument
from imageremoval.server.domain.platforms import PlatformSpec
from imageremoval.server.removal.answers import Key, check_request_id


@dataclass(frozen=True, slots=True)
class RemovalRequest:
    """What the caller asked for, already in domain terms."""

    reference: str
    namespace: str
    force: bool = False
    prune: bool = True
    platforms: tuple[PlatformSpec, ...] = ()
    allow_missing: bool = False
    async_gc: bool = False
    identities: tuple[str, ...] = ()  # the caller's certificate identities, for the namespace policy
    client: str = ""  # who is calling (identity or peer address), for the per-client share of slots
    deadline: float | None = None  # time.monotonic() by which the caller wants an answer
    request_id: str = ""  # AIP-155: a retry with the same ID gets the first call's answer
    validate_only: bool = False  # every check and the same items, but no change (no delete, label, event)
    # Prune execution: the (name, target) records the plan saw; any other set now is IMAGE_CHANGED.
    expected_records: frozenset[tuple[str, str]] | None = None
    every_name: bool = False  # prune by ID: several repositories are no conflict (each name goes)

    def fingerprint(self) -> tuple[object, ...]:
        """What the caller asked for, apart from who, when and the request ID."""
        return (
            self.reference,
            self.force,
            self.prune,
            self.platforms,
            self.allow_missing,
            self.async_gc,
            self.validate_only,
        )


def answer_key(request: RemovalRequest) -> Key | None:
    """Where a call's answer is kept for retries: per namespace and caller identity; None without a valid ID."""
    if not request.request_id:
        return None
    try:
        check_request_id(request.request_id)
    except InvalidArgument:
        return None  # refused (and logged) by the removal itself
    return (request.namespace, request.identities, request.request_id)
