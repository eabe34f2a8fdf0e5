"""First run: the sample image `make run` offers, the commands it prints, and `make demo`'s kinds of answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.__main__ import hints, load
from demo.archive import sample, write_archive
from imageremoval.client import ConflictError, ErrorReason, ImageRemovalClient, ProtectedError
from imageremoval.server.config import ServerConfig
from imageremoval.server.containerd.daemon import PrivateContainerd

from .support.ctr import Ctr
from .support.server import Server
from .support.store import Store


def test_the_sample_archive_imports_with_ctr_and_is_removed(
    ctr: Ctr, ns: str, store: Store, client: ImageRemovalClient, tmp_path: Path
) -> None:
    archive = write_archive(tmp_path / "sample.tar", {"docker.io/library/sample:latest": sample("sample")})
    ctr(ns, "images", "import", str(archive))
    assert store.names(ns) == {"docker.io/library/sample:latest"}
    items = [str(item) for item in client.remove("sample", namespace=ns)]
    assert items[0] == "Untagged: sample:latest" and items[1].startswith("Deleted: sha256:")


def test_once_serving_the_three_commands_are_printed(
    server: Server, containerd: PrivateContainerd, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ServerConfig(listen=server.target, containerd_address=containerd.address)
    assert hints(config, timeout=30) == 0
    commands = [line.split("#")[0].split() for line in capsys.readouterr().out.splitlines() if "#" in line]
    assert len(commands) == 3
    assert commands[0][:3] == ["ctr", "-a", containerd.address] and commands[0][3:5] == ["images", "import"]
    assert commands[1][3:5] == ["images", "ls"]
    assert commands[2][-2:] == ["rm", "sample"] and ["--server", server.target] == commands[2][1:3]


def test_the_demo_shows_every_kind_of_answer(
    server: Server, containerd: PrivateContainerd, client: ImageRemovalClient, ctr: Ctr, ns: str, tmp_path: Path
) -> None:
    config = ServerConfig(listen=server.target, containerd_address=containerd.address, namespace=ns)
    assert load(config, tmp_path / "demo.tar") == 0
    assert ctr.task_status(ns, "demo-running") == "RUNNING"
    assert [str(i) for i in client.remove("demo-tags:1", namespace=ns)] == ["Untagged: demo-tags:1"]
    assert str(client.remove("demo", namespace=ns)[-1]).startswith("Deleted: sha256:")
    for image, conflict in (("demo-running", "RUNNING_CONTAINER"), ("demo-stopped", "STOPPED_CONTAINER")):
        with pytest.raises(ConflictError) as caught:
            client.remove(image, namespace=ns)
        assert caught.value.metadata["conflict"] == conflict
    with pytest.raises(ProtectedError) as protected:  # its own family: not a ConflictError
        client.remove("demo-pinned", namespace=ns)
    assert protected.value.error_reason == ErrorReason.IMAGE_PROTECTED
    assert not isinstance(protected.value, ConflictError)
