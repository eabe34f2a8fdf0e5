"""A Go client generated from api/ alone (buf generate, protoc-gen-go, protoc-gen-go-grpc) against the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from imageremoval.gen.v1 import image_removal_pb2

from .support.images import file_layer, manifest
from .support.server import REPO, Server
from .support.store import Store

GO_DIR = Path(__file__).parent / "go"
PLUGINS = REPO / ".tools" / "go-plugins" / "bin"
GO_PACKAGE = "imageremoval.io/api/imageremoval/v1;imageremovalv1"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def go_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/go copied to a temp folder, with the client generated there from api/ by buf generate."""
    go = shutil.which("go")
    if go is None or not (PLUGINS / "protoc-gen-go-grpc").is_file():
        _unavailable("go or the protoc plugins are missing (run `make go-client-deps`)")
    module = tmp_path_factory.mktemp("go-client")
    for name in ("go.mod", "go.sum", "client_test.go", "buf.gen.yaml"):
        shutil.copy(GO_DIR / name, module / name)
    env = {**os.environ, "PATH": os.pathsep.join([str(PLUGINS), os.environ["PATH"]])}
    buf = REPO / ".venv" / "bin" / "buf"
    subprocess.run(
        [str(buf), "generate", "--template", str(module / "buf.gen.yaml"), "-o", str(module)],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    )
    generated = sorted(p.name for p in (module / "gen" / "imageremoval" / "v1").iterdir())
    assert generated == ["error_reason.pb.go", "image_removal.pb.go", "image_removal_grpc.pb.go"]
    (module / "gen" / "go.mod").write_text("module imageremoval.io/api\n\ngo 1.26\n")
    return module


def test_the_proto_names_the_published_go_import_path() -> None:
    """buf breaking lets go_package change once (from a placeholder); this pins the real one."""
    assert image_removal_pb2.DESCRIPTOR.GetOptions().go_package == GO_PACKAGE


def test_go_client_removes_an_image_and_reads_the_refusals_error_info(
    go_module: Path, server: Server, store: Store, ns: str
) -> None:
    names = ["docker.io/library/gopher:latest", "example.com/gopher:1"]
    image_id = store.put(ns, names, manifest((file_layer("g", b"go"),), note="go-client"))
    result = subprocess.run(
        ["go", "test", "-count=1", "-v", "./..."],
        cwd=go_module,
        env={
            **os.environ,
            "IMAGEREMOVAL_TARGET": server.target,
            "IMAGEREMOVAL_NAMESPACE": ns,
            "IMAGEREMOVAL_IMAGE_ID": image_id,
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--- PASS: TestRemoveImageAndReadARefusal" in result.stdout
    assert store.names(ns) == set()
