"""gRPC transport for ImageRemovalService: convert the request, call the use case, convert the answer.

Validation and policy live behind the use cases; every failure here ends the call through error_status.abort.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc
from imageremoval.server.cleaning.plan_seal import PlanSeal
from imageremoval.server.cleaning.prune_execution import PruneExecutor
from imageremoval.server.cleaning.space_reclaim import ReclaimTarget, SpaceReclaimer
from imageremoval.server.cleaning.use_cases import NodeCleaning
from imageremoval.server.domain.errors import RemovalError
from imageremoval.server.removal.reclaim import ReclaimEstimator
from imageremoval.server.removal.service import ImageRemover
from imageremoval.server.telemetry.logs import CALLER
from imageremoval.server.transport import prune_converters as pc
from imageremoval.server.transport.converters import to_request, to_response
from imageremoval.server.transport.credentials import client_key, peer_identities
from imageremoval.server.transport.error_status import abort

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
Context = grpc.aio.ServicerContext[object, object]


class ImageRemovalServicer(pb_grpc.ImageRemovalServiceServicer):
    """Serves the five RPCs; every failure ends as a status with an ErrorInfo, never as UNKNOWN."""

    def __init__(
        self,
        remover: ImageRemover,
        default_namespace: str,
        cleaning: NodeCleaning | None = None,
        executor: PruneExecutor | None = None,
        seal: PlanSeal | None = None,
        reclaim: ReclaimEstimator | None = None,
        max_response_bytes: int | None = None,
        space: SpaceReclaimer | None = None,
    ) -> None:
        self._space = space
        self._remover = remover
        self._default_namespace = default_namespace
        self._cleaning = cleaning
        self._executor = executor
        self._seal = seal or PlanSeal.from_file(None)
        self._reclaim = reclaim
        self._max_response_bytes = max_response_bytes

    async def RemoveImage(  # noqa: N802 - the name is the RPC's
        self, request: pb.RemoveImageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.RemoveImageResponse:
        try:
            identities = _identities(context)
            removal = to_request(
                request,
                self._default_namespace,
                identities=identities,
                client=client_key(context.peer(), identities),
                deadline=_deadline(context),
            )
            if removal.validate_only and self._reclaim is not None:
                items, reclaimable = await self._reclaim.validate(removal)
            elif self._reclaim is not None and not removal.async_gc:
                items, reclaimable = await self._reclaim.remove(removal)
            else:
                items, reclaimable = await self._remover.remove(removal), 0
        except RemovalError as error:  # logged and counted by the remover
            await abort(context, error)
            raise  # abort raised already; this keeps type checkers honest
        except Exception:
            _log.exception("removal failed unexpectedly")
            await abort(context, RemovalError("internal error; see the server log"))
            raise
        response = to_response(items, self._max_response_bytes)
        response.reclaimable_bytes = reclaimable
        return response

    async def ListImages(self, request: pb.ListImagesRequest, context: Context) -> pb.ListImagesResponse:  # noqa: N802
        async def call() -> pb.ListImagesResponse:
            assert self._cleaning is not None
            selector = pc.to_selector(request.selector) if request.HasField("selector") else None
            page, last = await self._cleaning.list_images(
                request.namespace or self._default_namespace,
                selector,
                size=pc.page_size(request.page_size),
                after=pc.decode_token(request.page_token),
                identities=_identities(context),
            )
            token = pc.encode_token(last) if last is not None else ""
            return pb.ListImagesResponse(images=[pc.to_image(i) for i in page], next_page_token=token)

        return await _answer(context, call)

    async def PlanPrune(self, request: pb.PlanPruneRequest, context: Context) -> pb.PrunePlan:  # noqa: N802
        async def call() -> pb.PrunePlan:
            assert self._cleaning is not None
            plan = await self._cleaning.plan(
                request.namespace or self._default_namespace,
                pc.to_selector(request.selector),
                identities=_identities(context),
            )
            return pc.to_plan(plan, request.selector, self._seal)

        return await _answer(context, call)

    async def ExecutePrune(  # noqa: N802
        self, request: pb.ExecutePruneRequest, context: Context
    ) -> AsyncIterator[pb.PruneProgress]:
        assert self._executor is not None
        try:
            plan = pc.from_plan(request.plan, self._seal)
            steps = self._executor.execute(plan, _identities(context))
            async for step in steps:
                yield pc.to_progress(step, request.plan)
        except RemovalError as error:
            await abort(context, error)
        except Exception:
            _log.exception("prune failed unexpectedly")
            await abort(context, RemovalError("internal error; see the server log"))

    async def ReclaimSpace(  # noqa: N802
        self, request: pb.ReclaimSpaceRequest, context: Context
    ) -> AsyncIterator[pb.PruneProgress]:
        assert self._space is not None
        try:
            target = ReclaimTarget(free_bytes=request.target_free_bytes, usage_percent=request.target_usage_percent)
            steps = self._space.reclaim(
                request.namespace or self._default_namespace,
                target,
                dry_run=request.dry_run,
                identities=_identities(context),
            )
            async for step in steps:
                yield pc.reclaim_progress(step)
        except RemovalError as error:
            await abort(context, error)
        except Exception:
            _log.exception("reclaim failed unexpectedly")
            await abort(context, RemovalError("internal error; see the server log"))


async def _answer(context: Context, call: Callable[[], Awaitable[_T]]) -> _T:
    """Run a read-only call; every failure becomes a status with an ErrorInfo."""
    try:
        return await call()
    except RemovalError as error:
        await abort(context, error)
        raise
    except Exception:
        _log.exception("call failed unexpectedly")
        await abort(context, RemovalError("internal error; see the server log"))
        raise


def _identities(context: Context) -> list[str]:
    """The caller's certificate identities, as ServerTelemetry read them (or from the certificate)."""
    caller = CALLER.get()
    return list(caller.identities) if caller else peer_identities(context.auth_context())


def _deadline(context: Context) -> float | None:
    """The caller's deadline on our monotonic clock; None when it set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 10**8:
        return None
    return time.monotonic() + remaining
