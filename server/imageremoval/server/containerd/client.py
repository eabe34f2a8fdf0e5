"""The one connection to containerd: opens the channel and hands out stores scoped to a namespace and deadline."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Sequence

import grpc
from google.protobuf import empty_pb2

from imageremoval.gen.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from imageremoval.gen.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from imageremoval.gen.containerd.services.version.v1 import version_pb2_grpc
from imageremoval.server.containerd.error_mapping import mapped
from imageremoval.server.containerd.event_decoding import decode_event
from imageremoval.server.containerd.store import LABEL_LEASE_EXPIRE, ContainerdStore, ImageTables, Stubs, quote
from imageremoval.server.domain.store import StoreEvent

RECONNECT_BACKOFF_MS = (100, 1000)  # first and longest wait between reconnection attempts to containerd


class ContainerdClient:
    """containerd's services on one channel; `scope` gives the ImageStore of one namespace and deadline."""

    def __init__(self, channel: grpc.aio.Channel, *, call_timeout: float = 60.0) -> None:
        self._channel = channel
        self._timeout = call_timeout
        self._stubs = Stubs.on(channel, call_timeout)
        self._events = events_pb2_grpc.EventsStub(channel)
        self._version = version_pb2_grpc.VersionStub(channel)
        self._namespaces = namespace_pb2_grpc.NamespacesStub(channel)
        self._index: ImageTables | None = None

    def attach_index(self, index: ImageTables) -> None:
        """Every store handed out from now on answers its record questions from this image index."""
        self._index = index

    def without_index(self) -> ContainerdClient:
        """The same channel, whose stores always ask containerd (for background readers that need no barrier)."""
        view = copy.copy(self)
        view._index = None
        return view

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
        call_timeout: float = 60.0,
    ) -> ContainerdClient:
        """Open one channel to containerd's unix socket, shared by every call."""
        target = address if address.startswith("unix:") else f"unix://{address}"
        channel = grpc.aio.insecure_channel(
            target,
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                # gRPC's default backoff grows to 120 s: after a long containerd outage we would stay
                # unavailable for seconds after it is back. A local socket is cheap to retry every second.
                ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
            ],
        )
        return cls(channel, call_timeout=call_timeout)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    def scope(self, namespace: str, *, deadline: float | None = None) -> ContainerdStore:
        """The store of one namespace; `deadline` (time.monotonic()) bounds each call, None: our timeout only."""
        return ContainerdStore(self._stubs, namespace, deadline, self._index)

    async def version(self) -> str:
        """containerd's version; also the health probe."""
        with mapped("version"):
            reply = await self._version.Version(empty_pb2.Empty(), timeout=self._timeout)
        return str(reply.version)

    async def namespaces(self) -> list[str]:
        """Every namespace containerd knows."""
        with mapped("namespaces.list"):
            reply = await self._namespaces.List(namespace_pb2.ListNamespacesRequest(), timeout=self._timeout)
        return sorted(n.name for n in reply.namespaces)

    async def events(self, topics: Iterable[str]) -> AsyncIterator[StoreEvent]:
        """containerd's events on these topics, from every namespace, decoded, until the stream breaks (then
        ContainerdUnavailable or ContainerdFailed)."""
        request = events_pb2.SubscribeRequest(filters=[f"topic=={quote(t)}" for t in topics])
        with mapped("events.subscribe"):
            async for envelope in self._events.Subscribe(request):
                yield decode_event(envelope.namespace, envelope.topic, envelope.event)

    async def probe(self, namespace: str, topic: str) -> None:
        """Publish an empty event on `topic` in `namespace` (events create no namespace)."""
        await self.scope(namespace).publish_empty(topic)


__all__ = ["LABEL_LEASE_EXPIRE", "RECONNECT_BACKOFF_MS", "ContainerdClient", "ContainerdStore"]
