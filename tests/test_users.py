"""The in-use rule's snapshot walk (users.SnapshotForest), on snapshot trees as containerd lists them."""

from __future__ import annotations

from imageremoval.server.domain.container_users import SnapshotForest
from imageremoval.server.domain.model import SnapshotInfo, SnapshotKind

CHAIN = "sha256:" + "1" * 64
CHILD_CHAIN = "sha256:" + "2" * 64
DOCKER_ID = "a" * 64


def forest(*snapshots: tuple[str, str, SnapshotKind]) -> SnapshotForest:
    return SnapshotForest(SnapshotInfo(name, parent, kind) for name, parent, kind in snapshots)


def test_a_dockerd_container_is_found_through_its_init_layer() -> None:
    tree = forest(
        (CHAIN, "", SnapshotKind.COMMITTED),
        (f"{DOCKER_ID}-init", CHAIN, SnapshotKind.COMMITTED),
        (DOCKER_ID, f"{DOCKER_ID}-init", SnapshotKind.ACTIVE),
    )
    assert tree.mounted_above([CHAIN]) == [DOCKER_ID]


def test_a_container_of_a_child_image_does_not_use_the_parent() -> None:
    tree = forest(
        (CHAIN, "", SnapshotKind.COMMITTED),
        (CHILD_CHAIN, CHAIN, SnapshotKind.COMMITTED),
        ("child-user", CHILD_CHAIN, SnapshotKind.ACTIVE),
    )
    assert tree.mounted_above([CHAIN]) == []
    assert tree.mounted_above([CHILD_CHAIN]) == ["child-user"]


def test_views_count_and_committed_leaves_do_not() -> None:
    tree = forest(
        (CHAIN, "", SnapshotKind.COMMITTED),
        ("mounted", CHAIN, SnapshotKind.VIEW),
        ("kept-build-step", CHAIN, SnapshotKind.COMMITTED),
    )
    assert tree.mounted_above([CHAIN]) == ["mounted"]


def test_a_cycle_in_odd_metadata_ends() -> None:
    tree = forest(
        ("x", "y", SnapshotKind.COMMITTED), ("y", "x", SnapshotKind.COMMITTED), ("z", "y", SnapshotKind.ACTIVE)
    )
    assert tree.mounted_above(["x"]) == ["z"]
