"""A Node.js client built only from our .proto removes images and reads rich errors, as client teams will."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imageremoval.server.domain.errors import DOMAIN, Conflict, Reason

from .support.images import file_layer, manifest
from .support.server import Server
from .support.store import Store

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "remove.mjs"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the locked npm packages installed (`make node-deps`)."""
    found = shutil.which("node")
    reason = ""
    if found is None:
        reason = "node is not installed (make test installs nodejs and npm)"
    elif not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        reason = "tests/node/node_modules is missing (run `make node-deps`)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert found is not None
    return found


def _remove(node: str, server: Server, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the Node client; its exit code and the one JSON document it prints."""
    result = subprocess.run(
        [node, str(SCRIPT), "--target", server.target, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    printed: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, printed


def test_node_client_removes_an_image(node: str, server: Server, store: Store, ns: str) -> None:
    image = manifest((file_layer("n", b"node"),), note="node")
    image_id = store.put(ns, ["docker.io/library/nodejs:latest", "docker.io/library/nodejs:two"], image)
    code, printed = _remove(node, server, "--namespace", ns, "nodejs:two")
    assert (code, printed) == (0, {"items": [{"untagged": "nodejs:two"}]})
    assert store.names(ns) == {"docker.io/library/nodejs:latest"}

    code, printed = _remove(node, server, "--namespace", ns, "nodejs")
    freed = str(sum(blob.size for blob in image.blobs))  # measured after the collection; int64 as a string
    assert (code, printed) == (
        0,
        {"items": [{"untagged": "nodejs:latest"}, {"deleted": image_id}], "reclaimableBytes": freed},
    )
    assert store.names(ns) == set()
    assert store.target(ns, "docker.io/library/nodejs:latest") is None


def test_node_client_reads_error_info_of_a_missing_image(node: str, server: Server, ns: str) -> None:
    code, printed = _remove(node, server, "--namespace", ns, "example.com/missing:9")
    assert code == 1
    assert printed == {
        "code": "NOT_FOUND",
        "message": "No such image: example.com/missing:9",
        "reason": Reason.IMAGE_NOT_FOUND.value,
        "domain": DOMAIN,
        "metadata": {"reference": "example.com/missing:9"},
    }


def test_node_client_reads_conflict_metadata(node: str, server: Server, store: Store, ns: str) -> None:
    names = ["docker.io/library/left:latest", "docker.io/library/right:latest"]
    image_id = store.put(ns, names, manifest((file_layer("m", b"multi"),), note="node-multi"))

    code, printed = _remove(node, server, "--namespace", ns, image_id)
    assert code == 1
    assert (printed["code"], printed["reason"]) == ("FAILED_PRECONDITION", Reason.IMAGE_CONFLICT.value)
    assert printed["metadata"] == {
        "conflict": Conflict.MULTIPLE_REFERENCES.value,
        "forceable": "true",
        "imageId": image_id,
        "reference": image_id[7:19],  # Docker names an image given by ID by its short ID
    }
    assert store.names(ns) == set(names)

    code, printed = _remove(node, server, "--namespace", ns, "--force", image_id)
    assert code == 0
    assert printed["items"][-1] == {"deleted": image_id}
    assert store.names(ns) == set()
