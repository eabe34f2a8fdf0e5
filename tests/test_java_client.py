"""A Java client generated from api/ alone (protobuf-maven-plugin, grpc-java) runs its JUnit test on the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .support.images import file_layer, manifest
from .support.server import REPO, Server
from .support.store import Store

JAVA_DIR = Path(__file__).parent / "java"


@pytest.fixture(scope="module")
def maven_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/java copied to a temp folder (its target/ stays out of the checkout); .proto files from api/."""
    if shutil.which("mvn") is None or shutil.which("java") is None:
        reason = "mvn or java is missing (make test installs maven and a JDK)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    project = tmp_path_factory.mktemp("java-client") / "project"
    shutil.copytree(JAVA_DIR, project, ignore=shutil.ignore_patterns("target"))
    return project


def test_java_client_removes_an_image_and_reads_the_refusals_error_info(
    maven_project: Path, server: Server, store: Store, ns: str
) -> None:
    names = ["docker.io/library/duke:latest", "example.com/duke:1"]
    image_id = store.put(ns, names, manifest((file_layer("j", b"java"),), note="java-client"))
    result = subprocess.run(
        ["mvn", "-q", "-B", "test", f"-Dapi.dir={REPO / 'api'}"],
        cwd=maven_project,
        env={
            **os.environ,
            "IMAGEREMOVAL_TARGET": server.target,
            "IMAGEREMOVAL_NAMESPACE": ns,
            "IMAGEREMOVAL_IMAGE_ID": image_id,
        },
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    reports = list((maven_project / "target" / "surefire-reports").glob("*.xml"))
    assert reports and 'tests="1"' in reports[0].read_text() and 'failures="0"' in reports[0].read_text()
    assert store.names(ns) == set()
