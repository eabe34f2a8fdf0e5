"""An ImageRemover wired as the server wires it (its events published), over a test's own containerd client."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from imageremoval.server.containerd.client import ContainerdClient
from imageremoval.server.containerd.event_publisher import EventPublisher
from imageremoval.server.removal.service import ImageRemover


def remover_on(client: ContainerdClient, **options: Any) -> ImageRemover:
    """The remover the server would build on this client (no metrics, the default policy unless given)."""
    tracer = TracerProvider().get_tracer("test")
    return ImageRemover(client, tracer, events=EventPublisher(client, tracer), **options)
