"""The Python client's contract: retries only UNAVAILABLE (its published service config), typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from imageremoval.client import ImageRemovalClient, NotFoundError, Platform, UnavailableError
from imageremoval.gen.v1 import image_removal_pb2 as pb
from imageremoval.gen.v1 import image_removal_pb2_grpc as pb_grpc


class Flaky(pb_grpc.ImageRemovalServiceServicer):
    """A stand-in peer that fails with a chosen code a number of times, to watch the client's retries."""

    def __init__(self) -> None:
        self.calls = 0
        self.failures: list[grpc.StatusCode] = []

    def RemoveImage(self, request: pb.RemoveImageRequest, context: grpc.ServicerContext) -> pb.RemoveImageResponse:  # noqa: N802
        self.calls += 1
        if self.failures:
            context.abort(self.failures.pop(0), "injected")
        return pb.RemoveImageResponse(items=[pb.RemovedItem(deleted="sha256:" + "a" * 64)])


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_ImageRemovalServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def test_unavailable_is_retried_by_the_published_service_config(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    servicer.failures = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    with ImageRemovalClient(target) as client:
        assert [item.kind for item in client.remove("busybox")] == ["deleted"]
    assert servicer.calls == 3


def test_other_failures_are_not_retried_and_raise_typed_errors(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    servicer.failures = [grpc.StatusCode.NOT_FOUND]
    with ImageRemovalClient(target) as client, pytest.raises(NotFoundError) as caught:
        client.remove("busybox")
    assert servicer.calls == 1
    assert (caught.value.code, caught.value.reason) == ("NOT_FOUND", "")  # no ErrorInfo from this peer


def test_retries_give_up_after_four_attempts(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 10
    with ImageRemovalClient(target) as client, pytest.raises(UnavailableError):
        client.remove("busybox")
    assert servicer.calls == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [("linux/arm64", Platform("linux", "arm64")), ("linux/arm/v7", Platform("linux", "arm", "v7"))],
)
def test_platforms_parse_like_dockers_flag(text: str, expected: Platform) -> None:
    assert Platform.parse(text) == expected


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_malformed_platforms_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Platform.parse(text)
