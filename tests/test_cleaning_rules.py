"""Pure rules of cleaning a node, with hand-made inventories: keep-N ties, globs, labels, signatures, sizes."""

from __future__ import annotations

import pytest

from imageremoval.server.cleaning.plan_seal import PlanSeal
from imageremoval.server.domain.errors import InvalidArgument
from imageremoval.server.domain.images import InventoryImage
from imageremoval.server.domain.model import ContentInfo, Descriptor, ImageRecord, LeaseResource
from imageremoval.server.domain.selector import LabelMatch, Selector, glob_regex, kept_latest, matches
from imageremoval.server.domain.sizes import (
    ImageSizes,
    ResourceGraph,
    blob_node,
    image_closures,
    image_sizes,
    reclaimable,
)

ZERO = ImageSizes(0, 0, 0)


def _image(hex_digit: str, created_ns: int, *names: str, labels: dict[str, str] | None = None) -> InventoryImage:
    image_id = "sha256:" + hex_digit * 64
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", image_id, 1)
    records = tuple(ImageRecord(name=n, target=target, created_ns=created_ns) for n in names) or (
        ImageRecord(name=f"moby-dangling@{image_id}", target=target, created_ns=created_ns),
    )
    familiar = tuple(n.removeprefix("docker.io/library/") for n in names)
    return InventoryImage(
        id=image_id,
        records=records,
        names=familiar,
        created_ns=created_ns,
        dangling=not names,
        labels=labels or {},
        platforms=(),
        running=0,
        stopped=0,
        protected_rule="",
        sizes=ZERO,
        parent="",
    )


def test_keep_latest_breaks_ties_in_creation_time_by_the_smaller_id() -> None:
    a = _image("a", 100, "docker.io/library/web:1")
    b = _image("b", 100, "docker.io/library/web:2")
    c = _image("c", 100, "docker.io/library/web:3")
    old = _image("d", 50, "docker.io/library/web:0")
    assert kept_latest([c, old, b, a], 1) == {a.id}
    assert kept_latest([c, old, b, a], 2) == {a.id, b.id}
    assert kept_latest([c, old, b, a], 4) == {a.id, b.id, c.id, old.id}
    assert kept_latest([c, old, b, a], 0) == set()


def test_keep_latest_counts_per_repository_and_any_repository_keeps() -> None:
    both = _image("1", 10, "docker.io/library/x:1", "docker.io/library/y:1")
    newer_x = _image("2", 20, "docker.io/library/x:2")
    dangling = _image("3", 30)
    assert kept_latest([both, newer_x, dangling], 1) == {newer_x.id, both.id}  # y keeps `both`


def test_reference_globs_are_go_path_match() -> None:
    assert glob_regex("app*").fullmatch("app:1.0")
    assert not glob_regex("*").fullmatch("team/app")
    assert glob_regex("team/*").fullmatch("team/app")
    assert glob_regex("a?p").fullmatch("app") and not glob_regex("a?p").fullmatch("a/p")
    assert glob_regex("[a-c]pp").fullmatch("bpp") and not glob_regex("[^a-c]pp").fullmatch("bpp")
    assert glob_regex(r"a\*").fullmatch("a*") and not glob_regex(r"a\*").fullmatch("ab")
    for bad in ("", "a[", "[]", "x\\"):
        with pytest.raises(InvalidArgument):
            glob_regex(bad)


def test_label_matches() -> None:
    labels = {"team": "a"}
    assert LabelMatch("team").holds(labels) and not LabelMatch("team", negate=True).holds(labels)
    assert LabelMatch("team", "a").holds(labels) and not LabelMatch("team", "b").holds(labels)
    assert LabelMatch("team", "b", negate=True).holds(labels) and LabelMatch("x", "b", negate=True).holds(labels)


def test_selector_filters() -> None:
    named = _image("1", 10, "docker.io/library/app:1", labels={"k": "v"})
    loose = _image("2", 20)
    assert [matches(i, Selector()) for i in (named, loose)] == [False, True]
    assert [matches(i, Selector(all_unused=True)) for i in (named, loose)] == [True, True]
    assert not matches(named, Selector(all_unused=True, created_before_ns=10))
    assert matches(named, Selector(all_unused=True, created_before_ns=11))
    assert not matches(loose, Selector(all_unused=True, references=("*",)))
    assert matches(named, Selector(all_unused=True, labels=(LabelMatch("k", "v"),)))
    with pytest.raises(InvalidArgument):
        Selector(keep_latest=-1).validate()


def test_a_plan_signature_covers_every_byte_and_the_key() -> None:
    seal, other = PlanSeal(b"k" * 32), PlanSeal(b"o" * 32)
    signature = seal.sign(b"plan")
    assert seal.verify(b"plan", signature)
    assert not seal.verify(b"plan!", signature)
    assert not other.verify(b"plan", signature)
    assert seal.key_id != other.key_id
    with pytest.raises(ValueError):
        PlanSeal(b"short")


def _info(digest: str, size: int, *children: str) -> ContentInfo:
    return ContentInfo(digest, size, {f"containerd.io/gc.ref.content.l.{i}": c for i, c in enumerate(children)})


def test_unique_and_reclaimable_bytes_follow_the_gc_graph() -> None:
    shared, leased = "sha256:" + "5" * 64, "sha256:" + "6" * 64
    one, two = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    graph = ResourceGraph.build(
        [_info(one, 10, shared, leased), _info(two, 20, shared), _info(shared, 100), _info(leased, 1000)],
        [],
        [LeaseResource("lease", "content", leased)],
        [],
    )
    closures = image_closures(graph, {one: one, two: two})
    sizes = image_sizes(graph, closures)
    assert sizes[one] == ImageSizes(content_bytes=1110, snapshot_bytes=0, unique_bytes=10)
    assert sizes[two] == ImageSizes(content_bytes=120, snapshot_bytes=0, unique_bytes=20)
    assert graph.size(reclaimable(graph, closures, [one])) == 10
    both = reclaimable(graph, closures, [one, two])
    assert graph.size(both) == 130  # the shared blob once; the leased one not at all
    assert both[blob_node(shared)] == [0, 1]
