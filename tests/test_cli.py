"""The command-line client and a generic gRPC client (buf curl) through reflection, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from imageremoval.server.config import ServerConfig
from imageremoval.server.containerd.daemon import PrivateContainerd

from .support.images import file_layer, manifest
from .support.interceptors import RecordingInterceptor
from .support.server import Server, ServerThread
from .support.store import Store

BIN = Path(sys.executable).parent


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGEREMOVAL_SERVER": server.target}
    return subprocess.run(
        [str(BIN / "imageremoval"), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_cli_prints_untagged_and_deleted_lines_like_docker_rmi(server: Server, store: Store, ns: str) -> None:
    image_id = store.put(
        ns,
        ["docker.io/library/cli:latest", "docker.io/library/cli:two"],
        manifest((file_layer("c", b"cli"),), note="cli"),
    )
    result = _cli(server, "rm", "--namespace", ns, "cli:two", "cli")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Untagged: cli:two", "Untagged: cli:latest", f"Deleted: {image_id}"]
    assert store.names(ns) == set()


def test_cli_reports_each_failure_and_exits_non_zero(server: Server, store: Store, ns: str) -> None:
    store.put(ns, ["docker.io/library/present:latest"], manifest((file_layer("p", b"p"),), note="present"))
    result = _cli(server, "rm", "-n", ns, "missing", "present")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error response from daemon: No such image: missing:latest"
    assert result.stdout.splitlines()[0] == "Untagged: present:latest"


def test_cli_usage_errors_exit_two(server: Server) -> None:
    assert _cli(server, "rm").returncode == 2
    assert _cli(server, "rm", "--platform", "linux", "x").returncode == 2


def test_buf_curl_removes_an_image_through_reflection(server: Server, store: Store, ns: str) -> None:
    image = manifest((file_layer("u", b"u"),), note="curl")
    image_id = store.put(ns, ["docker.io/library/curl:latest"], image)
    url = f"http://{server.target}/imageremoval.v1.ImageRemovalService/RemoveImage"
    result = subprocess.run(
        [
            str(BIN / "buf"),
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            url,
            "-d",
            json.dumps({"image": "curl", "namespace": ns}),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    freed = sum(blob.size for blob in image.blobs)  # measured after the collection the call waited for
    assert json.loads(result.stdout) == {
        "items": [{"untagged": "curl:latest"}, {"deleted": image_id}],
        "reclaimableBytes": str(freed),
    }
    listed = subprocess.run(
        [
            str(BIN / "buf"),
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            "--list-methods",
            f"http://{server.target}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "imageremoval.v1.ImageRemovalService/RemoveImage" in listed.stdout.splitlines()
    health = subprocess.run(
        [
            str(BIN / "buf"),
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            f"http://{server.target}/grpc.health.v1.Health/Check",
            "-d",
            '{"service": "imageremoval.v1.ImageRemovalService"}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(health.stdout) == {"status": "SERVING"}, health.stderr


def test_cli_waits_for_one_garbage_collection_per_command(containerd: PrivateContainerd, store: Store, ns: str) -> None:
    recorder = RecordingInterceptor()
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0"), containerd.address, TracerProvider(), containerd_interceptors=[recorder]
    )
    images = [manifest((file_layer("g", str(n).encode()),), note=f"gc{n}") for n in range(3)]
    for n, image in enumerate(images):
        store.put(ns, [f"docker.io/library/gc{n}:latest"], image)
    try:
        env = {**os.environ, "IMAGEREMOVAL_SERVER": f"127.0.0.1:{thread.port}"}
        result = subprocess.run(
            [str(BIN / "imageremoval"), "rm", "-n", ns, "gc0", "gc1", "gc2"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        thread.stop()
    assert result.returncode == 0, result.stderr
    # Each image's records go while a lease of ours holds its content; only the last release waits for collection.
    assert [d.sync for d in recorder.deletes()] == [False, False, False]
    assert sorted(r.sync for r in recorder.lease_deletes()) == [False, False, True]
    assert not any(store.has(ns, blob.digest) for image in images for blob in image.blobs)


def test_cli_parallel_removes_several_at_a_time_with_one_collection_and_prints_in_order(
    containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    recorder = RecordingInterceptor()
    thread = ServerThread(
        ServerConfig(listen="127.0.0.1:0"), containerd.address, TracerProvider(), containerd_interceptors=[recorder]
    )
    images = [manifest((file_layer("p", str(n).encode()),), note=f"par{n}") for n in range(6)]
    ids = [store.put(ns, [f"docker.io/library/par{n}:latest"], image) for n, image in enumerate(images)]
    names = [f"par{n}" for n in range(6)]
    try:
        env = {**os.environ, "IMAGEREMOVAL_SERVER": f"127.0.0.1:{thread.port}"}
        result = subprocess.run(
            [str(BIN / "imageremoval"), "rm", "-n", ns, "--parallel", "4", *names[:3], "missing", *names[3:]],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        thread.stop()
    assert result.returncode == 1  # the missing one fails the command, as one after another
    assert result.stderr.strip() == "Error response from daemon: No such image: missing:latest"
    expected = [
        line
        for name, image_id in zip(names, ids, strict=True)
        for line in (f"Untagged: {name}:latest", f"Deleted: {image_id}")
    ]
    assert result.stdout.splitlines() == expected  # in the order of the arguments, whatever order they finished in
    # Only the last removal waits for collection, and it starts after every other one has answered.
    assert sorted(r.sync for r in recorder.lease_deletes()) == [False] * 5 + [True]
    assert not any(store.has(ns, blob.digest) for image in images for blob in image.blobs)


def test_cli_parallel_must_be_at_least_one(server: Server) -> None:
    result = _cli(server, "rm", "--parallel", "0", "x")
    assert result.returncode == 2
    assert "--parallel" in result.stderr
