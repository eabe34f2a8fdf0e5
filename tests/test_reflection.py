"""Reflection describes our API (and health, reflection) only, and a method's name finds it, as grpcurl asks."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from .support.server import REPO, Server

SERVICE = "imageremoval.v1.ImageRemovalService"
GRPCURL = REPO / ".tools" / "go-plugins" / "bin" / "grpcurl"
Request = reflection_pb2.ServerReflectionRequest


def _ask(
    target: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies: Iterator[reflection_pb2.ServerReflectionResponse] = stub.ServerReflectionInfo(
            iter(requests), timeout=10
        )
        return list(replies)


def _files(reply: reflection_pb2.ServerReflectionResponse) -> list[str]:
    return sorted(
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in reply.file_descriptor_response.file_descriptor_proto
    )


def test_reflection_lists_only_the_services_on_this_port(server: Server) -> None:
    (reply,) = _ask(server.target, Request(list_services=""))
    assert sorted(s.name for s in reply.list_services_response.service) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        SERVICE,
    ]


@pytest.mark.parametrize(
    "request_fields",
    [
        {"file_containing_symbol": "containerd.services.images.v1.Images"},
        {"file_containing_symbol": "containerd.types.Descriptor"},
        {"file_by_filename": "containerd/services/images/v1/images.proto"},
        {"file_by_filename": "containerd/services/leases/v1/leases.proto"},
    ],
)
def test_containerds_internal_protos_are_not_described(server: Server, request_fields: dict[str, str]) -> None:
    (reply,) = _ask(server.target, Request(**request_fields))
    assert reply.WhichOneof("message_response") == "error_response"
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize(
    "symbol",
    [SERVICE, f"{SERVICE}.RemoveImage", "imageremoval.v1.RemoveImageRequest", "imageremoval.v1.RemovedItem"],
)
def test_every_symbol_of_our_api_finds_its_file(server: Server, symbol: str) -> None:
    (reply,) = _ask(server.target, Request(file_containing_symbol=symbol))
    # Our file, with the well-known types it imports (Duration, Timestamp), so a client can resolve every field.
    assert _files(reply) == [
        "google/protobuf/duration.proto",
        "google/protobuf/timestamp.proto",
        "imageremoval/v1/image_removal.proto",
    ]


def test_our_api_is_described_with_its_comments(server: Server) -> None:
    (reply,) = _ask(server.target, Request(file_containing_symbol=SERVICE))
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(r) for r in reply.file_descriptor_response.file_descriptor_proto
    ]
    (file,) = [f for f in files if f.name == "imageremoval/v1/image_removal.proto"]
    comments = [location.leading_comments for location in file.source_code_info.location]
    assert any(c.startswith(" RemoveImage removes one image reference") for c in comments)
    assert any(c.startswith(" RemoveImageRequest names the image to remove") for c in comments)


def test_an_unknown_method_of_our_service_is_not_found(server: Server) -> None:
    (reply,) = _ask(server.target, Request(file_containing_symbol=f"{SERVICE}.Nope"))
    assert reply.WhichOneof("message_response") == "error_response"


@pytest.fixture(scope="module")
def grpcurl() -> str:
    if not GRPCURL.is_file():
        reason = f"{GRPCURL} is missing (run `make go-client-deps`)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(GRPCURL)


def _grpcurl(grpcurl: str, server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """grpcurl -plaintext [options...] TARGET VERB-OR-METHOD [SYMBOL]: options before the target."""
    *options, last = args
    verbs = [] if "/" in last else ["describe"]
    options = [o for o in options if o != "describe"]
    command = [grpcurl, "-plaintext", *options, server.target, *verbs, last]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_grpcurl_describes_the_method(grpcurl: str, server: Server) -> None:
    result = _grpcurl(grpcurl, server, "describe", f"{SERVICE}.RemoveImage")
    assert result.returncode == 0, result.stderr
    assert (
        "rpc RemoveImage ( .imageremoval.v1.RemoveImageRequest ) returns ( .imageremoval.v1.RemoveImageResponse )"
        in (result.stdout)
    )


def test_grpcurl_calls_the_method_through_reflection(grpcurl: str, server: Server) -> None:
    result = subprocess.run(
        [
            grpcurl,
            "-plaintext",
            "-d",
            json.dumps({"image": "example.com/absent:1"}),
            server.target,
            f"{SERVICE}/RemoveImage",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "NotFound" in result.stderr and "No such image: example.com/absent:1" in result.stderr


def test_grpcurl_cannot_describe_containerds_services(grpcurl: str, server: Server) -> None:
    result = _grpcurl(grpcurl, server, "describe", "containerd.services.images.v1.Images")
    assert result.returncode != 0
    assert "Symbol not found" in result.stderr or "not found" in result.stderr.lower()
