"""Sync and asyncio clients for ImageRemovalService, with retries on UNAVAILABLE and typed errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Final, Self, TypeVar

import grpc

from imageremoval.gen.v1 import image_removal_pb2

from ._errors import ImageRemovalError, from_rpc_error
from ._model import Platform, RemovedItem, RemovedItems, Tls

DEFAULT_TARGET: Final = "127.0.0.1:50051"
DEFAULT_TIMEOUT: Final = 60.0

_SERVICE: Final = "imageremoval.v1.ImageRemovalService"
_REMOVE_IMAGE: Final = f"/{_SERVICE}/RemoveImage"
_LIST_IMAGES: Final = f"/{_SERVICE}/ListImages"
_PLAN_PRUNE: Final = f"/{_SERVICE}/PlanPrune"
_EXECUTE_PRUNE: Final = f"/{_SERVICE}/ExecutePrune"
_RECLAIM_SPACE: Final = f"/{_SERVICE}/ReclaimSpace"

# Retry only UNAVAILABLE: the server answers it only when nothing was changed, so that is the one safe code
# (and each call carries a request_id, so even a retry after an answer lost in transit is answered truly).
SERVICE_CONFIG: Final[str] = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": _SERVICE, "method": "RemoveImage"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    },
    indent=2,
)

CHANNEL_OPTIONS: Final[tuple[tuple[str, str | int], ...]] = (
    ("grpc.enable_retries", 1),
    ("grpc.service_config", SERVICE_CONFIG),
)

Result = tuple[str, list[RemovedItem] | ImageRemovalError]
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def _credentials(tls: Tls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)


def _options(tls: Tls | None) -> tuple[tuple[str, str | int], ...]:
    if tls is not None and tls.server_name:
        return (*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", tls.server_name))
    return CHANNEL_OPTIONS


def _request(
    image: str,
    *,
    namespace: str,
    force: bool,
    no_prune: bool,
    platforms: Sequence[Platform],
    allow_missing: bool,
    async_gc: bool,
    validate_only: bool = False,
) -> image_removal_pb2.RemoveImageRequest:
    return image_removal_pb2.RemoveImageRequest(
        image=image,
        namespace=namespace,
        force=force,
        no_prune=no_prune,
        platforms=[
            image_removal_pb2.Platform(os=p.os, architecture=p.architecture, variant=p.variant) for p in platforms
        ],
        allow_missing=allow_missing,
        async_gc=async_gc,
        validate_only=validate_only,
        # One ID per call: gRPC's retries resend these bytes, so a retry after a lost answer gets the first
        # attempt's answer from the server (AIP-155), never NOT_FOUND for what that attempt removed.
        request_id=str(uuid.uuid4()),
    )


def _items(response: image_removal_pb2.RemoveImageResponse) -> list[RemovedItem]:
    items = RemovedItems()
    items.truncated = response.truncated
    items.untagged_count, items.deleted_count = response.untagged_count, response.deleted_count
    for item in response.items:
        which = item.WhichOneof("item")
        if which == "untagged":
            items.append(RemovedItem("untagged", item.untagged))
        elif which == "deleted":
            items.append(RemovedItem("deleted", item.deleted))
        # An item with neither (a newer server's kind) is skipped rather than misreported.
    return items


class ImageRemovalClient:
    """Blocking client: `remove` one image or `remove_many` in order, like `docker rmi`.

    A channel passed in is used as is (its options are the caller's) and is not closed by `close`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.Channel | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        tls: Tls | None = None,
    ) -> None:
        self._owns_channel = channel is None
        if channel is None:
            channel = (
                grpc.secure_channel(target, _credentials(tls), options=_options(tls))
                if tls is not None
                else grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            )
        self._channel = channel
        self._timeout = timeout
        self._closed = False
        self._remove_image: grpc.UnaryUnaryMultiCallable[
            image_removal_pb2.RemoveImageRequest, image_removal_pb2.RemoveImageResponse
        ] = self._channel.unary_unary(
            _REMOVE_IMAGE,
            request_serializer=image_removal_pb2.RemoveImageRequest.SerializeToString,
            response_deserializer=image_removal_pb2.RemoveImageResponse.FromString,
        )
        self._list_images: grpc.UnaryUnaryMultiCallable[
            image_removal_pb2.ListImagesRequest, image_removal_pb2.ListImagesResponse
        ] = self._channel.unary_unary(
            _LIST_IMAGES,
            request_serializer=image_removal_pb2.ListImagesRequest.SerializeToString,
            response_deserializer=image_removal_pb2.ListImagesResponse.FromString,
        )
        self._plan_prune: grpc.UnaryUnaryMultiCallable[
            image_removal_pb2.PlanPruneRequest, image_removal_pb2.PrunePlan
        ] = self._channel.unary_unary(
            _PLAN_PRUNE,
            request_serializer=image_removal_pb2.PlanPruneRequest.SerializeToString,
            response_deserializer=image_removal_pb2.PrunePlan.FromString,
        )
        self._execute_prune = self._channel.unary_stream(
            _EXECUTE_PRUNE,
            request_serializer=image_removal_pb2.ExecutePruneRequest.SerializeToString,
            response_deserializer=image_removal_pb2.PruneProgress.FromString,
        )
        self._reclaim_space = self._channel.unary_stream(
            _RECLAIM_SPACE,
            request_serializer=image_removal_pb2.ReclaimSpaceRequest.SerializeToString,
            response_deserializer=image_removal_pb2.PruneProgress.FromString,
        )

    def remove(
        self,
        image: str,
        *,
        namespace: str = "",
        force: bool = False,
        no_prune: bool = False,
        platforms: Sequence[Platform] = (),
        allow_missing: bool = False,
        async_gc: bool = False,
        timeout: float | None = None,
        validate_only: bool = False,
    ) -> list[RemovedItem]:
        """Remove one image; the untagged names and deleted IDs in order. Raises ImageRemovalError."""
        return self.remove_measured(
            image,
            namespace=namespace,
            force=force,
            no_prune=no_prune,
            platforms=platforms,
            allow_missing=allow_missing,
            async_gc=async_gc,
            timeout=timeout,
            validate_only=validate_only,
        )[0]

    def remove_measured(
        self,
        image: str,
        *,
        namespace: str = "",
        force: bool = False,
        no_prune: bool = False,
        platforms: Sequence[Platform] = (),
        allow_missing: bool = False,
        async_gc: bool = False,
        timeout: float | None = None,
        validate_only: bool = False,
    ) -> tuple[list[RemovedItem], int]:
        """As `remove`, with the response's reclaimable_bytes (what it would free, or freed, measured)."""
        request = _request(
            image,
            namespace=namespace,
            force=force,
            no_prune=no_prune,
            platforms=platforms,
            allow_missing=allow_missing,
            async_gc=async_gc,
            validate_only=validate_only,
        )
        if self._closed:
            raise RuntimeError("ImageRemovalClient is closed")
        try:
            response = self._remove_image(request, timeout=self._timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return _items(response), response.reclaimable_bytes

    def list_images(
        self,
        *,
        namespace: str = "",
        selector: image_removal_pb2.ImageSelector | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> list[image_removal_pb2.Image]:
        """Every image (or those the selector's filters match), following next_page_token to the end."""
        images: list[image_removal_pb2.Image] = []
        token = ""
        while True:
            request = image_removal_pb2.ListImagesRequest(
                namespace=namespace, selector=selector, page_size=page_size, page_token=token
            )
            response = self._unary(self._list_images, request, timeout)
            images.extend(response.images)
            token = response.next_page_token
            if not token:
                return images

    def list_page(
        self, request: image_removal_pb2.ListImagesRequest, *, timeout: float | None = None
    ) -> image_removal_pb2.ListImagesResponse:
        """One ListImages page, as the server answered it."""
        return self._unary(self._list_images, request, timeout)

    def plan_prune(
        self,
        *,
        namespace: str = "",
        selector: image_removal_pb2.ImageSelector | None = None,
        timeout: float | None = None,
    ) -> image_removal_pb2.PrunePlan:
        """What a prune would remove, keep and free; changes nothing."""
        request = image_removal_pb2.PlanPruneRequest(namespace=namespace, selector=selector)
        return self._unary(self._plan_prune, request, timeout)

    def execute_prune(
        self, plan: image_removal_pb2.PrunePlan, *, timeout: float | None = None
    ) -> Generator[image_removal_pb2.PruneProgress, None, None]:
        """Execute exactly this plan; one PruneProgress per planned image, then the summary.

        Closing the iterator early cancels the call: the server stops between images.
        """
        if self._closed:
            raise RuntimeError("ImageRemovalClient is closed")
        call = self._execute_prune(image_removal_pb2.ExecutePruneRequest(plan=plan), timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    def reclaim_space(
        self,
        *,
        namespace: str = "",
        target_free_bytes: int = 0,
        target_usage_percent: float = 0.0,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> Generator[image_removal_pb2.PruneProgress, None, None]:
        """Free disk, least recently used first: skips, removals (or the plan, on a dry run), then the summary."""
        if self._closed:
            raise RuntimeError("ImageRemovalClient is closed")
        request = image_removal_pb2.ReclaimSpaceRequest(
            namespace=namespace,
            target_free_bytes=target_free_bytes,
            target_usage_percent=target_usage_percent,
            dry_run=dry_run,
        )
        call = self._reclaim_space(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    def _unary(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req, timeout: float | None) -> _Resp:
        if self._closed:
            raise RuntimeError("ImageRemovalClient is closed")
        try:
            return method(request, timeout=self._timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def remove_many(
        self,
        images: Sequence[str],
        *,
        namespace: str = "",
        force: bool = False,
        no_prune: bool = False,
        platforms: Sequence[Platform] = (),
        allow_missing: bool = False,
        async_gc: bool = False,
        timeout: float | None = None,
    ) -> list[Result]:
        """Remove each image in turn; one (image, items or error) per image, errors captured.

        Only the last removal waits for containerd's garbage collection, which frees what the earlier ones
        released too: a batch pays for one collection, not one per image.
        """
        results: list[Result] = []
        last = len(images) - 1
        for position, image in enumerate(images):
            try:
                items = self.remove(
                    image,
                    namespace=namespace,
                    force=force,
                    no_prune=no_prune,
                    platforms=platforms,
                    allow_missing=allow_missing,
                    async_gc=async_gc or position != last,  # one garbage collection for the batch
                    timeout=timeout,
                )
            except ImageRemovalError as error:
                results.append((image, error))
            else:
                results.append((image, items))
        return results

    def close(self) -> None:
        """Close the channel if this client opened it; later calls raise RuntimeError."""
        if self._closed:
            return
        self._closed = True
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncImageRemovalClient:
    """asyncio client (grpc.aio) with the same methods as ImageRemovalClient, awaited.

    The channel is opened on first use, so the client may be built outside a running event loop.
    A channel passed in is used as is (its options are the caller's) and is not closed by `close`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.aio.Channel | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        tls: Tls | None = None,
    ) -> None:
        self._target = target
        self._tls = tls
        self._owns_channel = channel is None
        self._channel = channel
        self._timeout = timeout
        self._remove_image: (
            grpc.aio.UnaryUnaryMultiCallable[
                image_removal_pb2.RemoveImageRequest, image_removal_pb2.RemoveImageResponse
            ]
            | None
        ) = None
        self._closed = False

    def _callable(
        self,
    ) -> grpc.aio.UnaryUnaryMultiCallable[image_removal_pb2.RemoveImageRequest, image_removal_pb2.RemoveImageResponse]:
        if self._closed:
            raise RuntimeError("AsyncImageRemovalClient is closed")
        if self._remove_image is None:
            if self._channel is None:
                self._channel = (
                    grpc.aio.secure_channel(self._target, _credentials(self._tls), options=_options(self._tls))
                    if self._tls is not None
                    else grpc.aio.insecure_channel(self._target, options=CHANNEL_OPTIONS)
                )
            self._remove_image = self._channel.unary_unary(
                _REMOVE_IMAGE,
                request_serializer=image_removal_pb2.RemoveImageRequest.SerializeToString,
                response_deserializer=image_removal_pb2.RemoveImageResponse.FromString,
            )
        return self._remove_image

    async def remove(
        self,
        image: str,
        *,
        namespace: str = "",
        force: bool = False,
        no_prune: bool = False,
        platforms: Sequence[Platform] = (),
        allow_missing: bool = False,
        async_gc: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> list[RemovedItem]:
        """Remove one image; the untagged names and deleted IDs in order. Raises ImageRemovalError."""
        request = _request(
            image,
            namespace=namespace,
            force=force,
            no_prune=no_prune,
            platforms=platforms,
            allow_missing=allow_missing,
            async_gc=async_gc,
        )
        call = self._callable()
        try:
            response = await call(request, timeout=self._timeout if timeout is None else timeout)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return _items(response)

    async def remove_many(
        self,
        images: Sequence[str],
        *,
        namespace: str = "",
        force: bool = False,
        no_prune: bool = False,
        platforms: Sequence[Platform] = (),
        allow_missing: bool = False,
        async_gc: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, sent to the server
    ) -> list[Result]:
        """Remove each image in turn (not concurrently); one (image, items or error) per image.

        Only the last removal waits for garbage collection, as in the sync client.
        """
        results: list[Result] = []
        last = len(images) - 1
        for position, image in enumerate(images):
            try:
                items = await self.remove(
                    image,
                    namespace=namespace,
                    force=force,
                    no_prune=no_prune,
                    platforms=platforms,
                    allow_missing=allow_missing,
                    async_gc=async_gc or position != last,  # one garbage collection for the batch
                    timeout=timeout,
                )
            except ImageRemovalError as error:
                results.append((image, error))
            else:
                results.append((image, items))
        return results

    async def close(self) -> None:
        """Close the channel if this client opened it; later calls raise RuntimeError."""
        self._closed = True
        self._remove_image = None
        if self._owns_channel and self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
