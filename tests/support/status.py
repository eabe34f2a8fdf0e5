"""The google.rpc.Status a failed call carries, read as clients read it (grpcio-status), not parsed by hand."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


def status_of(error: grpc.RpcError) -> status_pb2.Status:
    """The rich status of a failed call; from_call also checks it agrees with the call's code and message."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no grpc-status-details-bin on {error}"
    return status


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo every failure sends first."""
    info = error_details_pb2.ErrorInfo()
    assert status_of(error).details[0].Unpack(info)
    return info
