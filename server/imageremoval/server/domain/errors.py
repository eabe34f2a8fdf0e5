"""Typed domain errors: every failure the removal can report, with its stable reason and metadata."""

from __future__ import annotations

import enum
from collections.abc import Mapping

DOMAIN = "imageremoval.v1"


class ErrorKind(enum.Enum):
    """What kind of failure this is; the transport maps each kind to one gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    INTERNAL = "INTERNAL"


class Reason(enum.StrEnum):
    """The stable UPPER_SNAKE reasons clients match on (google.rpc.ErrorInfo.reason)."""

    INVALID_REFERENCE = "INVALID_REFERENCE"
    AMBIGUOUS_REFERENCE = "AMBIGUOUS_REFERENCE"
    INVALID_NAMESPACE = "INVALID_NAMESPACE"
    INVALID_PLATFORM = "INVALID_PLATFORM"
    FORCE_REQUIRED = "FORCE_REQUIRED"
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    PLATFORM_NOT_FOUND = "PLATFORM_NOT_FOUND"
    IMAGE_CONFLICT = "IMAGE_CONFLICT"
    IMAGE_CHANGED = "IMAGE_CHANGED"
    CONTAINERD_UNAVAILABLE = "CONTAINERD_UNAVAILABLE"
    CONTAINERD_ERROR = "CONTAINERD_ERROR"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NAMESPACE_NOT_ALLOWED = "NAMESPACE_NOT_ALLOWED"
    IMAGE_PROTECTED = "IMAGE_PROTECTED"
    TOO_MANY_REMOVALS = "TOO_MANY_REMOVALS"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    PLATFORM_SHARED = "PLATFORM_SHARED"
    REMOVAL_INCOMPLETE = "REMOVAL_INCOMPLETE"
    INVALID_SELECTOR = "INVALID_SELECTOR"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    INVALID_PLAN = "INVALID_PLAN"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    INVALID_REQUEST_ID = "INVALID_REQUEST_ID"
    INVALID_RECLAIM_TARGET = "INVALID_RECLAIM_TARGET"
    RECLAIM_UNAVAILABLE = "RECLAIM_UNAVAILABLE"
    INTERNAL = "INTERNAL"


class Conflict(enum.StrEnum):
    """Why an image cannot be deleted (ErrorInfo metadata `conflict`)."""

    RUNNING_CONTAINER = "RUNNING_CONTAINER"
    STOPPED_CONTAINER = "STOPPED_CONTAINER"
    MULTIPLE_REFERENCES = "MULTIPLE_REFERENCES"


class RemovalError(Exception):
    """A failure with a kind, a stable reason, a human message and machine-readable metadata."""

    kind: ErrorKind = ErrorKind.INTERNAL
    reason: Reason = Reason.INTERNAL
    # Set on a lost answer (UNAVAILABLE, DEADLINE_EXCEEDED) once containerd was read back and showed that the
    # change was not made: only then may it reach a caller as such.
    verified_unchanged: bool = False

    def __init__(self, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(RemovalError):
    """The request is malformed; retrying it unchanged cannot succeed."""

    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, reason: Reason, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message, metadata)
        self.reason = reason


class ImageNotFound(RemovalError):
    """No image matches the reference (Docker: `No such image: <ref>`)."""

    kind = ErrorKind.NOT_FOUND
    reason = Reason.IMAGE_NOT_FOUND

    def __init__(self, reference: str) -> None:
        super().__init__(f"No such image: {reference}", {"reference": reference})


class PlatformNotFound(RemovalError):
    """A requested platform is not present in the image."""

    kind = ErrorKind.NOT_FOUND
    reason = Reason.PLATFORM_NOT_FOUND

    def __init__(self, reference: str, platform: str, image_id: str) -> None:
        super().__init__(
            # Docker's wording (moby daemon/containerd: deleteImagePlatforms around errPlatformNotFound).
            f"failed to delete platform {platform} for image {image_id}: image with reference {reference} was "
            f"found but does not provide the specified platform ({platform})",
            {"reference": reference, "platform": platform, "imageId": image_id},
        )


class PlatformShared(RemovalError):
    """A requested platform's manifest also serves a platform that was not requested."""

    kind = ErrorKind.FAILED_PRECONDITION
    reason = Reason.PLATFORM_SHARED


class RemovalIncomplete(RemovalError):
    """A failure after the first change: the metadata says what was changed; retry with allow_missing."""

    kind = ErrorKind.ABORTED
    reason = Reason.REMOVAL_INCOMPLETE


class OutcomeUnknown(RemovalError):
    """containerd stopped answering after a change was sent and did not answer again in time, so nobody
    knows whether it was made: never UNAVAILABLE, which a client would retry into NOT_FOUND."""

    kind = ErrorKind.ABORTED
    reason = Reason.OUTCOME_UNKNOWN


class ImageConflict(RemovalError):
    """Something still uses the image; Docker's wording, with the conflict in metadata."""

    kind = ErrorKind.FAILED_PRECONDITION
    reason = Reason.IMAGE_CONFLICT

    def __init__(
        self,
        *,
        reference: str,
        conflict: Conflict,
        forceable: bool,
        image_id: str,
        detail: str,
        container: str = "",
    ) -> None:
        how = "must be forced" if forceable else "cannot be forced"
        metadata = {
            "conflict": conflict.value,
            "forceable": "true" if forceable else "false",
            "imageId": image_id,
            "reference": reference,
        }
        if container:
            metadata["container"] = container
        super().__init__(f"conflict: unable to delete {reference} ({how}) - {detail}", metadata)
        self.conflict = conflict
        self.forceable = forceable
        self.container = container
        self.image_id = image_id


class ImageChanged(RemovalError):
    """The image's records moved while we were removing it; nothing more was changed."""

    kind = ErrorKind.ABORTED
    reason = Reason.IMAGE_CHANGED


class ContainerdUnavailable(RemovalError):
    """containerd did not answer; safe to retry."""

    kind = ErrorKind.UNAVAILABLE
    reason = Reason.CONTAINERD_UNAVAILABLE


class ContainerdFailed(RemovalError):
    """containerd answered with an error we did not expect."""

    kind = ErrorKind.INTERNAL
    reason = Reason.CONTAINERD_ERROR


class DeadlineExceeded(RemovalError):
    """The caller's deadline ran out before containerd answered."""

    kind = ErrorKind.DEADLINE_EXCEEDED
    reason = Reason.DEADLINE_EXCEEDED


class NamespaceNotAllowed(RemovalError):
    """The caller may not touch this namespace (server allow-list or its certificate identity)."""

    kind = ErrorKind.PERMISSION_DENIED
    reason = Reason.NAMESPACE_NOT_ALLOWED


class ImageProtected(RemovalError):
    """The image is pinned (CRI) or matches a protected pattern."""

    kind = ErrorKind.FAILED_PRECONDITION
    reason = Reason.IMAGE_PROTECTED


class ReclaimUnavailable(RemovalError):
    """A usage-percent target, but the server cannot measure containerd's root filesystem."""

    kind = ErrorKind.FAILED_PRECONDITION
    reason = Reason.RECLAIM_UNAVAILABLE


class TooManyRemovals(RemovalError):
    """The concurrency limit is reached; retry later."""

    kind = ErrorKind.RESOURCE_EXHAUSTED
    reason = Reason.TOO_MANY_REMOVALS


class NotFoundInContainerd(Exception):
    """The adapter's not-found: the domain decides whether it is an error."""


class AlreadyExistsInContainerd(Exception):
    """The adapter's already-exists: the domain decides whether it is an error."""
