"""The removal core on a test's own containerd client: a bare ImageRemover, and the estimator the server wraps it in."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from imageremoval.server.cleaning.inventory import InventoryReader
from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.event_publisher import EventPublisher
from imageremoval.server.domain.policy import RemovalPolicy
from imageremoval.server.removal.reclaim import ReclaimEstimator
from imageremoval.server.removal.service import ImageRemover


def remover_on(client: ContainerdClient, **options: Any) -> ImageRemover:
    """A bare ImageRemover with its events published (no metrics, the default policy unless given). The server
    does not call it directly for RemoveImage: it goes through `estimator_on`'s wrapper unless async_gc is set."""
    tracer = TracerProvider().get_tracer("test")
    return ImageRemover(client, tracer, events=EventPublisher(client, tracer), **options)


def estimator_on(
    client: ContainerdClient, remover: ImageRemover, policy: RemovalPolicy | None = None
) -> ReclaimEstimator:
    """The ReclaimEstimator the server builds around `remover` (app.py): what answers RemoveImage's calls."""
    return ReclaimEstimator(client, remover, InventoryReader(client, policy or RemovalPolicy()))
