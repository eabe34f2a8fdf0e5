"""Typed domain errors: every failure the removal can report, with its stable reason and metadata."""

from __future__ import annotations

import enum
from collections.abc import Mapping

DOMAIN = "imageremoval.v1"


class Reason(enum.StrEnum):
    """The API's ErrorReason names (error_reason.proto), which clients match in google.rpc.ErrorInfo.reason.

    The domain imports no generated code, so it names them here; tests/test_error_table.py checks that these,
    the enum, the server's code table, the README table and the proto comments list the same reasons.
    """

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
        return name  # the value is the name, as ErrorInfo.reason is the enum value's name

    INVALID_REFERENCE = enum.auto()
    AMBIGUOUS_REFERENCE = enum.auto()
    INVALID_NAMESPACE = enum.auto()
    INVALID_PLATFORM = enum.auto()
    FORCE_REQUIRED = enum.auto()
    IMAGE_NOT_FOUND = enum.auto()
    PLATFORM_NOT_FOUND = enum.auto()
    IMAGE_CONFLICT = enum.auto()
    IMAGE_CHANGED = enum.auto()
    CONTAINERD_UNAVAILABLE = enum.auto()
    CONTAINERD_ERROR = enum.auto()
    DEADLINE_EXCEEDED = enum.auto()
    NAMESPACE_NOT_ALLOWED = enum.auto()
    IMAGE_PROTECTED = enum.auto()
    TOO_MANY_REMOVALS = enum.auto()
    REQUEST_TOO_LARGE = enum.auto()
    MALFORMED_REQUEST = enum.auto()
    PLATFORM_SHARED = enum.auto()
    REMOVAL_INCOMPLETE = enum.auto()
    INVALID_SELECTOR = enum.auto()
    INVALID_PAGE_TOKEN = enum.auto()
    INVALID_PLAN = enum.auto()
    OUTCOME_UNKNOWN = enum.auto()
    INVALID_REQUEST_ID = enum.auto()
    INVALID_RECLAIM_TARGET = enum.auto()
    RECLAIM_UNAVAILABLE = enum.auto()
    INTERNAL = enum.auto()


class Conflict(enum.StrEnum):
    """Why an image cannot be deleted (ErrorInfo metadata `conflict`): the API's ConflictKind names."""

    _generate_next_value_ = Reason._generate_next_value_

    RUNNING_CONTAINER = enum.auto()
    STOPPED_CONTAINER = enum.auto()
    MULTIPLE_REFERENCES = enum.auto()


class RemovalError(Exception):
    """A failure with a stable reason (which decides its gRPC code), a human message and machine metadata."""

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

    def __init__(self, reason: Reason, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message, metadata)
        self.reason = reason


class ImageNotFound(RemovalError):
    """No image matches the reference (Docker: `No such image: <ref>`)."""

    reason = Reason.IMAGE_NOT_FOUND

    def __init__(self, reference: str) -> None:
        super().__init__(f"No such image: {reference}", {"reference": reference})


class PlatformNotFound(RemovalError):
    """A requested platform is not present in the image."""

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

    reason = Reason.PLATFORM_SHARED


class RemovalIncomplete(RemovalError):
    """A failure after the first change: the metadata says what was changed; retry with allow_missing."""

    reason = Reason.REMOVAL_INCOMPLETE


class OutcomeUnknown(RemovalError):
    """containerd stopped answering after a change was sent and did not answer again in time, so nobody
    knows whether it was made: never UNAVAILABLE, which a client would retry into NOT_FOUND."""

    reason = Reason.OUTCOME_UNKNOWN


class ImageConflict(RemovalError):
    """Something still uses the image; Docker's wording, with the conflict in metadata."""

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

    reason = Reason.IMAGE_CHANGED


class ContainerdUnavailable(RemovalError):
    """containerd did not answer; safe to retry."""

    reason = Reason.CONTAINERD_UNAVAILABLE


class ContainerdFailed(RemovalError):
    """containerd answered with an error we did not expect."""

    reason = Reason.CONTAINERD_ERROR


class DeadlineExceeded(RemovalError):
    """The caller's deadline ran out before containerd answered."""

    reason = Reason.DEADLINE_EXCEEDED


class NamespaceNotAllowed(RemovalError):
    """The caller may not touch this namespace (server allow-list or its certificate identity)."""

    reason = Reason.NAMESPACE_NOT_ALLOWED


class ImageProtected(RemovalError):
    """The image is pinned (CRI) or matches a protected pattern."""

    reason = Reason.IMAGE_PROTECTED


class ReclaimUnavailable(RemovalError):
    """A usage-percent target, but the server cannot measure containerd's root filesystem."""

    reason = Reason.RECLAIM_UNAVAILABLE


class TooManyRemovals(RemovalError):
    """The concurrency limit is reached; retry later."""

    reason = Reason.TOO_MANY_REMOVALS


class NotFoundInContainerd(Exception):
    """The adapter's not-found: the domain decides whether it is an error."""


class AlreadyExistsInContainerd(Exception):
    """The adapter's already-exists: the domain decides whether it is an error."""
