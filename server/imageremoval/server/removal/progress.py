"""What one removal has changed so far, so a failure after a change says exactly that."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from imageremoval.server.domain.errors import OutcomeUnknown, RemovalError, RemovalIncomplete
from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.removal.outcomes import LOST_ANSWER
from imageremoval.server.telemetry import names as t

_MAX_METADATA_LIST = 1024  # characters of each of the untagged/deleted lists in a partial failure's metadata
_MAX_CHANGES_TEXT = 700  # characters of the changes listed in a partial failure's message (it is clipped at 1024)


@dataclass(slots=True)
class Progress:
    """One call's state: what it changed so far (so a failure can say exactly that), and whether to stop."""

    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # changes that are not items, e.g. a dangling record
    action: str = t.ACTION_DELETE
    missing: bool = False
    cancelled: bool = False  # the caller went away: stop at the next phase boundary, if nothing changed yet
    committed: bool = False  # the first change has started: run to the end
    keep_content: bool = False  # records are being put back: the content's lease must not be released

    def incomplete(self, error: RemovalError) -> RemovalError:
        """A failure after a change: ABORTED with what was changed, so nobody retries it blindly.

        The lists are cut between names, never inside one; the counts are exact, and `truncated` says
        whether any list was cut.
        """
        if not self.committed:
            return error
        if not (self.items or self.notes):
            if isinstance(error, LOST_ANSWER) and not error.verified_unchanged:  # sent, answer lost: unknown
                return OutcomeUnknown(
                    f"{error.message}; a change had been sent, so whether it happened is unknown; retry with the "
                    "same request_id or with allow_missing",
                    {k: v for k, v in error.metadata.items() if k in {"imageId", "reference", "operation"}},
                )
            return error
        untagged = [i.value for i in self.items if i.kind is ItemKind.UNTAGGED]
        deleted = [i.value for i in self.items if i.kind is ItemKind.DELETED]
        untagged_text, untagged_cut = _joined(untagged, _MAX_METADATA_LIST)
        deleted_text, deleted_cut = _joined(deleted, _MAX_METADATA_LIST)
        metadata = {
            "cause": error.reason.value,
            "untagged": untagged_text,
            "untaggedCount": str(len(untagged)),
            "deleted": deleted_text,
            "deletedCount": str(len(deleted)),
            "truncated": "true" if untagged_cut or deleted_cut else "false",
            **{k: v for k, v in error.metadata.items() if k in {"imageId", "reference", "operation"}},
        }
        changes = [f"{i.kind.value} {i.value}" for i in self.items] + self.notes
        shown, cut = _joined(changes, _MAX_CHANGES_TEXT, separator=", ")
        more = f" and {cut} more" if cut else ""
        return RemovalIncomplete(f"{error.message[:200]}; changed before the failure: {shown}{more}", metadata)


def _joined(values: Sequence[str], limit: int, *, separator: str = ",") -> tuple[str, int]:
    """As many whole values as fit in `limit` characters, and how many were left out."""
    text = ""
    for position, value in enumerate(values):
        candidate = value if not text else f"{text}{separator}{value}"
        if len(candidate) > limit:
            return text, len(values) - position
        text = candidate
    return text, 0
