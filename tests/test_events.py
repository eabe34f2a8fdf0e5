"""Our events read cleanly by containerd's own consumers: `ctr events` prints them, warns about none."""

from __future__ import annotations

import subprocess
import time

from imageremoval.client import ImageRemovalClient
from imageremoval.gen.containerd.events import image_pb2
from imageremoval.server import telemetry as t
from imageremoval.server.daemon import PrivateContainerd

from .support.images import file_layer, manifest
from .support.store import Store


def test_ctr_events_prints_our_events_without_a_warning(
    client: ImageRemovalClient, containerd: PrivateContainerd, store: Store, ns: str
) -> None:
    image_id = store.put(ns, ["docker.io/library/ev:1", "docker.io/library/ev:2"], manifest((file_layer("e", b"ev"),)))
    watcher = subprocess.Popen(
        ["ctr", "--address", containerd.address, "events", f'namespace=="{ns}"'],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(0.5)  # ctr subscribes before the removals publish
        with store.record_events(ns, expect=3) as events:
            client.remove("ev:1", namespace=ns)
            client.remove("ev:2", namespace=ns)
    finally:
        time.sleep(0.5)
        watcher.terminate()
        output, _ = watcher.communicate(timeout=10)
    assert events.ours() == [(t.TOPIC_UNTAG, "ev:1"), (t.TOPIC_UNTAG, "ev:2"), (t.TOPIC_DELETE, image_id)]
    assert all(e.payload.type_url == t.EVENT_TYPE_URL for e in events.events if e.topic.startswith("/imageremoval/"))
    # ctr 2.x warns on every start on a cgroup v1 host (as this one is); that says nothing about our events.
    warnings = [line for line in output.splitlines() if "level=warning" in line and "cgroup v1" not in line]
    assert "cannot unmarshal" not in output and not warnings, output
    ours = [line for line in output.splitlines() if "/imageremoval/" in line]
    assert [line.split()[-1] for line in ours] == [
        '{"name":"ev:1"}',
        '{"name":"ev:2"}',
        f'{{"name":"{image_id}"}}',
    ], output
    assert image_pb2.ImageDelete.DESCRIPTOR.full_name == t.EVENT_TYPE_URL
