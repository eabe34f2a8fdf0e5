"""Python client for imageremoval.v1.ImageRemovalService: remove containerd images like `docker rmi`."""

from __future__ import annotations

from ._client import SERVICE_CONFIG, AsyncImageRemovalClient, ImageRemovalClient
from ._errors import (
    AbortedError,
    ConflictError,
    ConflictKind,
    DeadlineExceededError,
    ErrorReason,
    FailedPreconditionError,
    ImageRemovalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PlatformSharedError,
    ProtectedError,
    ReclaimUnavailableError,
    ResourceExhaustedError,
    UnavailableError,
)
from ._model import Platform, RemovedItem, RemovedItems, Tls

__all__ = [
    "SERVICE_CONFIG",
    "AbortedError",
    "AsyncImageRemovalClient",
    "ConflictError",
    "ConflictKind",
    "DeadlineExceededError",
    "ErrorReason",
    "FailedPreconditionError",
    "ImageRemovalClient",
    "ImageRemovalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "Platform",
    "PlatformSharedError",
    "ProtectedError",
    "ReclaimUnavailableError",
    "RemovedItem",
    "RemovedItems",
    "ResourceExhaustedError",
    "Tls",
    "UnavailableError",
]
