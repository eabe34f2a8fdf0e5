"""Docker's conflict rules, as a pure function: which use of an image refuses its removal, and how."""

from __future__ import annotations

from collections.abc import Sequence

from imageremoval.server.domain.docker_rules import DeleteImage, Resolution
from imageremoval.server.domain.errors import Conflict, ImageConflict
from imageremoval.server.domain.model import ImageRecord, TaskState
from imageremoval.server.domain.references import familiar_name, short_id


def check_conflicts(
    resolution: Resolution, decision: DeleteImage, users: Sequence[tuple[str, TaskState]], *, force: bool
) -> ImageRecord | None:
    """Raise the first conflict Docker would (running, then stopped, then several repositories).

    Returns the named record to soft-untag when the last name of an image a container uses is removed with
    force: the container keeps its content through a dangling record instead.
    """
    image_id = resolution.image_id
    if decision.by_name is not None:
        if not users:
            return None
        container, state = users[0]
        if force:
            return decision.by_name
        raise ImageConflict(
            reference=familiar_name(decision.by_name.name),
            conflict=Conflict.RUNNING_CONTAINER if state is TaskState.RUNNING else Conflict.STOPPED_CONTAINER,
            forceable=True,
            image_id=image_id,
            container=container,
            detail=f"container {short_id(container)} is using its referenced image {short_id(image_id)}",
        )
    reference = short_id(image_id)
    running = [c for c, s in users if s is TaskState.RUNNING]
    if running:
        raise ImageConflict(
            reference=reference,
            conflict=Conflict.RUNNING_CONTAINER,
            forceable=False,
            image_id=image_id,
            container=running[0],
            detail=f"image is being used by running container {short_id(running[0])}",
        )
    if decision.check_stopped and users:
        raise ImageConflict(
            reference=reference,
            conflict=Conflict.STOPPED_CONTAINER,
            forceable=True,
            image_id=image_id,
            container=users[0][0],
            detail=f"image is being used by stopped container {short_id(users[0][0])}",
        )
    if decision.check_multiple and len(decision.records) > 1:
        raise ImageConflict(
            reference=reference,
            conflict=Conflict.MULTIPLE_REFERENCES,
            forceable=True,
            image_id=image_id,
            detail="image is referenced in multiple repositories",
        )
    return None
