"""Our events read cleanly by containerd's own consumers: `ctr events` prints them, warns about none."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator

from google.protobuf import any_pb2

from imageremoval.client import ImageRemovalClient
from imageremoval.gen.containerd.events import image_pb2
from imageremoval.gen.containerd.services.events.v1 import events_pb2
from imageremoval.server.containerd.daemon import PrivateContainerd
from imageremoval.server.telemetry import names as t

from .support.images import file_layer, manifest
from .support.store import Store


class CtrEvents:
    """`ctr events` for one namespace, its output read line by line as it comes."""

    def __init__(self, address: str, namespace: str) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._process = subprocess.Popen(
            ["ctr", "--address", address, "events", f'namespace=="{namespace}"'],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def shows(self, text: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: any(text in line for line in self.lines), timeout=timeout)

    def stop(self) -> str:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(10)
        return "\n".join(self.lines)


def _until_ctr_shows(store: Store, ns: str, ctr: CtrEvents, topic: str) -> None:
    """Publish a marker (in containerd's own encoding) until ctr prints it: ctr is subscribed, and it has
    printed every event published before the marker."""
    marker = any_pb2.Any(
        type_url=image_pb2.ImageDelete.DESCRIPTOR.full_name,
        value=image_pb2.ImageDelete(name="marker").SerializeToString(),
    )
    for _ in range(100):
        store.events.Publish(events_pb2.PublishRequest(topic=topic, event=marker), metadata=store.md(ns))
        if ctr.shows(topic, timeout=0.3):
            return
    raise AssertionError(f"ctr events never printed {topic}")


@contextlib.contextmanager
def ctr_events(store: Store, containerd: PrivateContainerd, ns: str) -> Iterator[CtrEvents]:
    """ctr subscribed before the block; at its end, ctr has printed every event of the block."""
    ctr = CtrEvents(containerd.address, ns)
    try:
        _until_ctr_shows(store, ns, ctr, "/test/ctr-ready")
        yield ctr
        _until_ctr_shows(store, ns, ctr, "/test/ctr-end")
    finally:
        ctr.stop()


def test_ctr_events_prints_our_events_without_a_warning(
    client: ImageRemovalClient, containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    image_id = store.put(ns, ["docker.io/library/ev:1", "docker.io/library/ev:2"], manifest((file_layer("e", b"ev"),)))
    with ctr_events(store, containerd, ns) as ctr, store.record_events(ns, expect=3) as events:
        client.remove("ev:1", namespace=ns)
        client.remove("ev:2", namespace=ns)
    output = "\n".join(ctr.lines)
    assert events.ours() == [(t.TOPIC_UNTAG, "ev:1"), (t.TOPIC_UNTAG, "ev:2"), (t.TOPIC_DELETE, image_id)]
    assert events.untagged_image_ids() == [("ev:1", image_id), ("ev:2", image_id)]  # which image the name named
    types = {e.topic: e.payload.type_url for e in events.events if e.topic.startswith("/imageremoval/")}
    assert types == {t.TOPIC_UNTAG: t.EVENT_UNTAG_TYPE_URL, t.TOPIC_DELETE: t.EVENT_TYPE_URL}
    # ctr 2.x warns on every start on a cgroup v1 host (as this one is); that says nothing about our events.
    warnings = [line for line in output.splitlines() if "level=warning" in line and "cgroup v1" not in line]
    assert "cannot unmarshal" not in output and not warnings, output
    ours = [line for line in output.splitlines() if "/imageremoval/" in line]
    assert [json.loads(line.split()[-1]) for line in ours] == [
        {"name": "ev:1", "labels": {t.EVENT_IMAGE_ID_LABEL: image_id}},
        {"name": "ev:2", "labels": {t.EVENT_IMAGE_ID_LABEL: image_id}},
        {"name": image_id},
    ], output
    assert image_pb2.ImageDelete.DESCRIPTOR.full_name == t.EVENT_TYPE_URL
    assert image_pb2.ImageUpdate.DESCRIPTOR.full_name == t.EVENT_UNTAG_TYPE_URL
