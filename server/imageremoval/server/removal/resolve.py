"""Resolve what the user typed to one image and every record naming it (moby's resolveAllReferences)."""

from __future__ import annotations

from imageremoval.server.domain.docker_rules import Resolution
from imageremoval.server.domain.errors import ImageChanged, ImageNotFound, InvalidArgument, Reason
from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.references import IdReference, NameReference, Reference, short_id
from imageremoval.server.domain.store import ImageStore

ATTEMPTS = 3


def display(reference: Reference) -> str:
    """How Docker shows the reference in `No such image: ...` (a short hex string is a name with `latest`)."""
    if isinstance(reference, NameReference):
        return reference.familiar
    if reference.full_digest is not None:
        return reference.text if not reference.text.startswith(reference.hex) else reference.full_digest
    return reference.text if ":" in reference.text else f"{reference.text}:latest"


async def resolve(store: ImageStore, reference: Reference) -> Resolution:
    """The image and all its references; retried when the store changes between our reads, then ABORTED."""
    for _ in range(ATTEMPTS):
        resolution = await _resolve_once(store, reference)
        if resolution is not None:
            return resolution
    shown = display(reference)
    raise ImageChanged(f"image {shown} changed during lookup; try again", {"reference": shown})


async def _by_id(
    store: ImageStore, reference: IdReference
) -> tuple[str, ImageRecord | None, NameReference | None, list[ImageRecord] | None]:
    """(target digest, the record named exactly, the name when the hex string was one, and all the records
    with that target when the lookup already listed them)."""
    exact_name = reference.dangling_name or (None if reference.full_digest is None else reference.full_digest)
    if exact_name is not None:
        found = await store.image(exact_name)
        if found is None:
            if reference.full_digest is None:
                raise ImageNotFound(display(reference)) from None
            return reference.full_digest, None, None, None
        return found.target.digest, found, None, None
    candidates = await store.records_by_id_prefix(reference.hex, reference.lookalike_name)
    if not candidates:
        raise ImageNotFound(display(reference))
    targets = sorted({c.target.digest for c in candidates})
    # A name that looks like an ID and points elsewhere than the images the prefix matches is as ambiguous
    # as two images matching the prefix (moby's resolveAllReferences); only alone does the name decide.
    if len(targets) > 1:
        shown = display(reference)
        raise InvalidArgument(
            Reason.AMBIGUOUS_REFERENCE,
            f"ambiguous reference: {reference.text} matches {len(targets)} images",
            {"reference": shown, "candidates": ",".join(short_id(d) for d in targets[:10])},
        )
    exact = [c for c in candidates if c.name == reference.lookalike_name]
    if exact:
        found = exact[0]
        digest = found.target.digest
        if digest.removeprefix("sha256:").startswith(reference.hex):
            return digest, found, None, None
        return digest, found, NameReference(found.name.rsplit(":", 1)[0], "latest", None), None
    # The prefix filter matched every record whose target starts with the prefix: with one target, that is
    # every record of the image, so no second scan of the namespace is needed.
    return targets[0], None, None, candidates


async def _resolve_once(store: ImageStore, reference: Reference) -> Resolution | None:
    """One consistent lookup; None when the store changed between our two reads."""
    found: ImageRecord | None = None
    named: NameReference | None = None
    listed: list[ImageRecord] | None = None
    if isinstance(reference, IdReference):
        digest, found, named, listed = await _by_id(store, reference)
    else:
        named = reference
        found = await store.image(reference.name)
        if found is not None:
            digest = found.target.digest
        elif reference.digest is None:
            raise ImageNotFound(reference.familiar)
        else:
            digest = reference.digest
    children: list[ImageRecord] | None = None
    if listed is not None:
        records = listed
    else:
        # One scan answers both: the image's records, and the images built on it (moby's parent label).
        related = await store.image_and_children(digest)
        records = [r for r in related if r.image_id == digest]
        children = [r for r in related if r.image_id != digest]
    if not records:
        if found is None:
            raise ImageNotFound(display(reference))
        return None
    if found is not None and all(r.name != found.name for r in records):
        return None
    return Resolution(
        image_id=digest,
        found=found,
        all=tuple(records),
        named=named,
        display=display(reference),
        children=None if children is None else tuple(children),
    )
