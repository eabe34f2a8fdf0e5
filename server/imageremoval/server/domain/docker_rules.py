"""Docker's decision table, as pure functions: which records a reference untags, and what must be checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imageremoval.server.domain.errors import ImageNotFound
from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.references import NameReference, is_dangling, parse_stored_name


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a reference resolved to: one image (one target digest) and every record naming it."""

    image_id: str
    found: ImageRecord | None  # the record named exactly by the reference, if any
    all: tuple[ImageRecord, ...]  # every record whose target is image_id
    named: NameReference | None  # the name the user typed; None when they typed an ID
    display: str  # the reference as Docker would print it in an error
    # The images naming this one as their parent, read in the same List as `all` (None: not read). With
    # `all`, the state of the store as of that one read, which can serve as the re-read before the delete.
    children: tuple[ImageRecord, ...] | None = None


@dataclass(frozen=True, slots=True)
class Untag:
    """Remove only these names; the image keeps its other names, so no content or container check."""

    records: tuple[ImageRecord, ...]


@dataclass(frozen=True, slots=True)
class DeleteImage:
    """Delete every record of the image, after the conflict checks this decision asks for."""

    records: tuple[ImageRecord, ...]
    by_name: ImageRecord | None  # set when the last name was given: a container using it needs force
    check_stopped: bool  # a stopped container is a (soft) conflict
    check_multiple: bool  # several repositories naming it is a (soft) conflict


Decision = Untag | DeleteImage


def same_references(named: NameReference | None, records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """The records Docker treats as the same as `named` (moby's getSameReferences).

    Same repository and tag; with a digest reference, every tag of that repository; digest-only records of
    the repository only when no other tag of it remains; dangling records always. With no name, the first
    named record stands in for it.
    """
    tag: str | None = None
    all_tags = False
    if named is not None:
        if named.tag is not None:
            tag = named.tag
        elif named.digest is not None:
            all_tags = True
    same: list[ImageRecord] = []
    digest_refs: list[ImageRecord] | None = []
    for record in records:
        stored = None if is_dangling(record.name) else parse_stored_name(record.name)
        if stored is not None:  # dangling records and names that do not parse always count (as in moby)
            if named is None:
                named = stored
                tag = stored.tag
            elif named.repository != stored.repository:
                continue
            elif not all_tags:
                if stored.tag is not None:
                    if tag is None:
                        tag = stored.tag
                    elif tag != stored.tag:
                        digest_refs = None  # another tag of the repository remains
                        continue
                else:
                    if digest_refs is not None:
                        digest_refs.append(record)
                    continue
        same.append(record)
    if digest_refs:
        same.extend(digest_refs)
    return same


def decide(resolution: Resolution, *, force: bool, by_id: bool) -> Decision:
    """Untag some names or delete the image, as moby's ImageDelete decides, before anything changes."""
    records = resolution.all
    found = resolution.found
    if found is None or by_id:
        named = None if by_id else resolution.named
        same = same_references(named, records)
        if named is not None and not same:
            raise ImageNotFound(named.familiar)
        if named is not None and len(same) < len(records):
            return Untag(tuple(same))
        return DeleteImage(
            records=records,
            by_name=None,
            check_stopped=not force,
            check_multiple=not force and len(records) > 1 and (found is not None or len(same) != len(records)),
        )
    same = same_references(parse_stored_name(found.name) or resolution.named, records)
    if len(same) != len(records):
        return Untag(tuple(same))
    return DeleteImage(records=records, by_name=found, check_stopped=not force, check_multiple=False)
