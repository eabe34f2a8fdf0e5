"""gRPC transport for ImageRemovalService: validate, call the domain, convert. No policy lives here."""

from __future__ import annotations

import logging
import time

import grpc

from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc

from .converters import to_request, to_response
from .errors import RemovalError
from .logs import CALLER
from .removal import ImageRemover
from .security import client_key, peer_identities
from .status import abort

_log = logging.getLogger(__name__)


class ImageRemovalServicer(pb_grpc.ImageRemovalServiceServicer):
    """Serves RemoveImage; every failure ends as a status with an ErrorInfo, never as UNKNOWN."""

    def __init__(self, remover: ImageRemover, default_namespace: str, max_response_bytes: int | None = None) -> None:
        self._remover = remover
        self._default_namespace = default_namespace
        self._max_response_bytes = max_response_bytes

    async def RemoveImage(  # noqa: N802 - the name is the RPC's
        self, request: pb.RemoveImageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.RemoveImageResponse:
        try:
            caller = CALLER.get()  # set by ServerTelemetry, which read the certificate already
            identities = list(caller.identities) if caller else peer_identities(context.auth_context())
            removal = to_request(
                request,
                self._default_namespace,
                identities=identities,
                client=client_key(context.peer(), identities),
                deadline=_deadline(context),
            )
            items = await self._remover.remove(removal)
        except RemovalError as error:  # logged and counted by the remover
            await abort(context, error)
            raise  # abort raised already; this keeps type checkers honest
        except Exception:
            _log.exception("removal failed unexpectedly")
            await abort(context, RemovalError("internal error; see the server log"))
            raise
        return to_response(items, self._max_response_bytes)


def _deadline(context: grpc.aio.ServicerContext[object, object]) -> float | None:
    """The caller's deadline on our monotonic clock; None when it set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 10**8:
        return None
    return time.monotonic() + remaining
