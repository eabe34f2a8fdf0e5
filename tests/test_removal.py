"""RemoveImage against a real containerd: every reference form, content really freed, shared content kept."""

from __future__ import annotations

import pytest

from imageremoval.client import ImageRemovalClient, ImageRemovalError
from imageremoval.server.domain.errors import Reason

from .support.ctr import Ctr
from .support.images import Layer, file_layer, index, manifest
from .support.items import deleted, pairs, untagged
from .support.store import Store

NAME = "docker.io/library/alpha:latest"


def _image(note: str = "alpha"):  # type: ignore[no-untyped-def]
    return manifest((file_layer("a.txt", note.encode()), file_layer("b.txt", b"b-" + note.encode())), note=note)


@pytest.mark.parametrize(
    "form", ["name", "name:tag", "domain/name:tag", "full-id", "short-id", "sha256-short", "name@digest"]
)
def test_remove_by_each_reference_form(client: ImageRemovalClient, store: Store, ns: str, form: str) -> None:
    image = _image()
    image_id = store.put(ns, [NAME], image)
    typed = {
        "name": "alpha",
        "name:tag": "alpha:latest",
        "domain/name:tag": "docker.io/library/alpha:latest",
        "full-id": image_id,
        "short-id": image_id[7:19],
        "sha256-short": image_id[:19],
        "name@digest": f"alpha@{image_id}",
    }[form]
    assert pairs(client.remove(typed, namespace=ns)) == [untagged("alpha:latest"), deleted(image_id)]
    assert store.names(ns) == set()


def test_content_is_gone_when_the_call_returns(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image = _image()
    store.put(ns, [NAME], image)
    assert all(store.has(ns, blob.digest) for blob in image.blobs)
    client.remove("alpha", namespace=ns)
    assert [blob.digest for blob in image.blobs if store.has(ns, blob.digest)] == []


def test_content_shared_with_another_image_stays(client: ImageRemovalClient, store: Store, ns: str) -> None:
    shared = file_layer("shared.txt", b"shared by two images")
    first = manifest((shared, file_layer("one.txt", b"1")), note="one")
    second = manifest((shared, file_layer("two.txt", b"2")), note="two")
    store.put(ns, ["docker.io/library/one:latest"], first)
    store.put(ns, ["docker.io/library/two:latest"], second)
    client.remove("one", namespace=ns)
    assert store.intact(ns, shared.blob.digest)
    assert store.all_present(ns, second)
    assert not store.has(ns, first.blob.digest)
    assert not store.has(ns, first.layers[1].blob.digest)


def test_removing_one_of_two_names_only_untags(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image = _image()
    store.put(ns, [NAME, "docker.io/library/alpha:v2"], image)
    assert pairs(client.remove("alpha:v2", namespace=ns)) == [untagged("alpha:v2")]
    assert store.names(ns) == {NAME}
    assert store.all_present(ns, image)


def test_multi_platform_index_is_removed_whole(client: ImageRemovalClient, store: Store, ns: str) -> None:
    amd = manifest((file_layer("x", b"amd"),), architecture="amd64")
    arm = manifest((file_layer("x", b"arm"),), architecture="arm64", variant="v8")
    idx = index((amd, arm))
    image_id = store.put(ns, [NAME], idx, missing=[arm])
    assert pairs(client.remove("alpha", namespace=ns)) == [untagged("alpha:latest"), deleted(image_id)]
    assert not any(store.has(ns, b.digest) for b in (idx.blob, *amd.blobs))


def test_namespace_defaults_to_the_servers(client: ImageRemovalClient, store: Store) -> None:
    image = _image("default-namespace")
    store.put("default", ["docker.io/library/in-default:latest"], image)
    assert pairs(client.remove("in-default"))[-1] == deleted(image.blob.digest)
    assert "docker.io/library/in-default:latest" not in store.names("default")


def test_events_are_published_in_the_order_of_the_items(client: ImageRemovalClient, store: Store, ns: str) -> None:
    image_id = store.put(ns, [NAME, f"docker.io/library/alpha@{_image().blob.digest}"], _image())
    with store.record_events(ns, expect=3) as recorder:
        items = client.remove(image_id[:12], namespace=ns, force=True)
    expected = [
        ("/imageremoval/untag" if kind == "untagged" else "/imageremoval/delete", value) for kind, value in pairs(items)
    ]
    assert recorder.ours() == expected
    assert expected[-1] == ("/imageremoval/delete", image_id)


def test_unpacked_snapshots_of_a_leased_config_are_released(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="release-snapshots")
    store.put(ns, ["docker.io/library/bb:latest"], image)
    ctr.run_detached(ns, "docker.io/library/bb:latest", "unpacker", "/bin/true")
    ctr.cleanup(ns)
    labels = store.labels_of(ns, image.config.digest) or {}
    snapshot_labels = [k for k in labels if k.startswith("containerd.io/gc.ref.snapshot.")]
    assert snapshot_labels, "ctr run unpacks the image and labels its config"
    chain = labels[snapshot_labels[0]]
    with store.lease(ns) as lease:
        store.leases.AddResource(_resource_request(lease, image.config.digest), metadata=store.md(ns))
        client.remove("bb", namespace=ns)
        after = store.labels_of(ns, image.config.digest)
        assert after is not None, "the lease keeps the config blob"
        assert not [k for k in after if k.startswith("containerd.io/gc.ref.snapshot.")]
        snapshots = ctr(ns, "snapshots", "ls").stdout
        assert chain not in snapshots, "the unpacked snapshot was garbage-collected"


def test_snapshots_stay_when_another_image_uses_the_config(
    client: ImageRemovalClient, store: Store, ctr: Ctr, ns: str, busybox: Layer
) -> None:
    image = manifest((busybox,), note="shared-config")
    store.put(ns, ["docker.io/library/bb:latest"], image)
    ctr.run_detached(ns, "docker.io/library/bb:latest", "unpacker", "/bin/true")
    ctr.cleanup(ns)
    # A second image whose manifest differs (an annotation) but shares config and layers.
    twin = manifest((busybox,), note="shared-config", annotations={"twin": "1"})
    assert twin.config == image.config and twin.blob != image.blob
    store.put(ns, ["docker.io/library/twin:latest"], twin)
    client.remove("bb", namespace=ns)
    labels = store.labels_of(ns, image.config.digest) or {}
    assert [k for k in labels if k.startswith("containerd.io/gc.ref.snapshot.")]


def test_a_missing_image_is_not_found_with_dockers_message(client: ImageRemovalClient, ns: str) -> None:
    with pytest.raises(ImageRemovalError) as caught:
        client.remove("nope", namespace=ns)
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.reason == Reason.IMAGE_NOT_FOUND
    assert caught.value.domain == "imageremoval.v1"
    assert caught.value.message == "No such image: nope:latest"


def _resource_request(lease: str, digest: str):  # type: ignore[no-untyped-def]
    from imageremoval.gen.containerd.services.leases.v1 import leases_pb2

    return leases_pb2.AddResourceRequest(id=lease, resource=leases_pb2.Resource(id=digest, type="content"))
