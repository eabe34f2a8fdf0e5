"""Python client for imageremoval.v1.ImageRemovalService: remove containerd images like `docker rmi`."""

from __future__ import annotations

from ._client import SERVICE_CONFIG, AsyncImageRemovalClient, ImageRemovalClient
from ._errors import (
    AbortedError,
    ConflictError,
    DeadlineExceededError,
    ImageRemovalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from ._model import Platform, RemovedItem, RemovedItems, Tls

__all__ = [
    "SERVICE_CONFIG",
    "AbortedError",
    "AsyncImageRemovalClient",
    "ConflictError",
    "DeadlineExceededError",
    "ImageRemovalClient",
    "ImageRemovalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "Platform",
    "RemovedItem",
    "RemovedItems",
    "Tls",
    "UnavailableError",
]
