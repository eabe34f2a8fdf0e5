"""The service's own container image (make image), run by the suite's containerd as the DaemonSet runs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imageremoval.client import ConflictError, ImageRemovalClient
from imageremoval.server.containerd.daemon import PrivateContainerd

from .support.ctr import Ctr
from .support.images import Layer, manifest
from .support.invariant import broken_images
from .support.store import Store
from .support.waiting import wait_until

IMAGE_TAR = Path(__file__).parent.parent / "build" / "image" / "imageremoval.oci.tar"
IMAGE = "docker.io/library/imageremoval:0.1.0"
IMAGE_USER = 65532  # the image's own user (deploy/image/build.sh)
CONTAINER = "imageremoval-server"


def _image_tar() -> Path:
    if not IMAGE_TAR.exists():
        message = f"{IMAGE_TAR} is missing: `make image` builds it (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return IMAGE_TAR


def _serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _task_pid(ctr: Ctr, ns: str) -> int:
    for line in ctr(ns, "tasks", "ls").stdout.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == CONTAINER:
            return int(parts[1])
    raise AssertionError("no task")


@pytest.fixture(scope="module")
def image_ns(ctr: Ctr, store: Store) -> Iterator[str]:
    """One namespace for the module: importing and unpacking the image is the slow part, done once."""
    namespace = f"image-test-{os.getpid()}"
    yield namespace
    ctr.cleanup(namespace)
    problems = broken_images(store, namespace)
    for record in store.names(namespace):
        store.delete_record(namespace, record)
    assert not problems, f"content lost: {problems}"


@pytest.fixture(scope="module")
def socket_for_the_image_user(containerd: PrivateContainerd) -> Iterator[Path]:
    """containerd's socket stays 0660; its group becomes the image user's, as containerd's [grpc] gid does."""
    socket = Path(containerd.address)
    before = socket.stat().st_gid
    os.chown(socket, -1, IMAGE_USER)
    yield socket
    os.chown(socket, -1, before)


@pytest.fixture(scope="module")
def served(
    ctr: Ctr, image_ns: str, tmp_path_factory: pytest.TempPathFactory, socket_for_the_image_user: Path
) -> Iterator[str]:
    """The image imported with `ctr images import` and running, read-only, with the socket bind-mounted."""
    ns = image_ns
    done = ctr(ns, "images", "import", "--base-name", "docker.io/library/imageremoval", str(_image_tar()))
    assert IMAGE in ctr(ns, "images", "ls", "-q").stdout.split(), done.stdout
    run = tmp_path_factory.mktemp("image") / "run"
    run.mkdir()
    os.chown(run, IMAGE_USER, IMAGE_USER)
    ctr(
        ns, "run", "-d", "--read-only",
        "--mount", f"type=bind,src={socket_for_the_image_user},dst=/run/containerd/containerd.sock,options=rbind:rw",
        "--mount", f"type=bind,src={run},dst=/run/imageremoval,options=rbind:rw",
        IMAGE, CONTAINER,
        "imageremoval-server", "--listen", "unix:///run/imageremoval/grpc.sock", "--namespace", ns,
    )  # fmt: skip
    target = f"unix://{run / 'grpc.sock'}"
    assert wait_until(lambda: _serving(target), timeout=60), ctr(ns, "tasks", "ls").stdout
    yield target
    ctr(ns, "tasks", "kill", "-s", "SIGTERM", CONTAINER, check=False)
    wait_until(lambda: ctr.task_status(ns, CONTAINER) in {"STOPPED", ""}, timeout=30)


def test_the_image_runs_as_its_own_user_on_a_read_only_root(ctr: Ctr, image_ns: str, served: str) -> None:
    pid = _task_pid(ctr, image_ns)
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(IMAGE_USER)] * 4
    root = next(
        line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"
    )
    assert "ro" in root[5].split(",")


def test_an_image_is_removed_through_the_container_from_outside(
    store: Store, image_ns: str, busybox: Layer, served: str
) -> None:
    ns = image_ns
    image_id = store.put(ns, ["docker.io/library/victim:latest"], manifest((busybox,), note="victim"))
    with ImageRemovalClient(served) as client:
        items = [str(item) for item in client.remove("victim", namespace=ns)]
        assert items == ["Untagged: victim:latest", f"Deleted: {image_id}"]
        # The container's own image is in use by a running container: refused, as docker rmi would.
        with pytest.raises(ConflictError) as caught:
            client.remove(IMAGE, namespace=ns)
    assert caught.value.metadata["conflict"] == "RUNNING_CONTAINER"
    assert "docker.io/library/victim:latest" not in store.names(ns)
    assert IMAGE in store.names(ns)


def test_sigterm_stops_the_container_cleanly(ctr: Ctr, image_ns: str, served: str) -> None:
    ns = image_ns  # last in the module: it ends the shared container
    ctr(ns, "tasks", "kill", "-s", "SIGTERM", CONTAINER)
    assert wait_until(lambda: ctr.task_status(ns, CONTAINER) == "STOPPED", timeout=30)
    out = ctr(ns, "tasks", "delete", CONTAINER, check=False)
    assert "non-zero exit code" not in out.stdout + out.stderr, out.stderr
