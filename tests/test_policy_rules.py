"""The node owner's policy: namespaces, protected and pinned images, deadlines, slots; prune asks the same."""

from __future__ import annotations

import contextlib
import time

import pytest
from opentelemetry import trace

from imageremoval.server.domain.container_users import ContainerUsers
from imageremoval.server.domain.docker_rules import Resolution
from imageremoval.server.domain.errors import DeadlineExceeded, ImageProtected, NamespaceNotAllowed, TooManyRemovals
from imageremoval.server.domain.model import Descriptor, ImageRecord
from imageremoval.server.domain.policy import PINNED_LABEL, ConcurrencyLimit, RemovalPolicy
from imageremoval.server.removal.call import Call, Services
from imageremoval.server.removal.parents import prunable_parents
from imageremoval.server.removal.progress import Progress
from imageremoval.server.removal.recording import OutcomeRecorder
from imageremoval.server.removal.request import RemovalRequest
from imageremoval.server.removal.turns import ImageTurns

from .support.fake_store import FakeStore

TARGET = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "e" * 64, 1)


def _record(name: str, **labels: str) -> ImageRecord:
    return ImageRecord(name, TARGET, labels)


def test_a_pinned_image_is_protected_even_with_force_unless_the_server_allows_it() -> None:
    pinned = [_record("docker.io/library/app:latest", **{PINNED_LABEL: "pinned"})]
    with pytest.raises(ImageProtected):
        RemovalPolicy().check_protected(pinned, force=True, display="app")
    RemovalPolicy(allow_force_protected=True).check_protected(pinned, force=True, display="app")
    with pytest.raises(ImageProtected):
        RemovalPolicy(allow_force_protected=True).check_protected(pinned, force=False, display="app")


@pytest.mark.parametrize("pattern", ["registry.k8s.io/pause:*", "registry.k8s.io/pause", "registry.k8s.io/*"])
def test_a_protected_pattern_matches_every_tag_of_the_repository(pattern: str) -> None:
    policy = RemovalPolicy(protected_patterns=(pattern,))
    assert policy.protected_rule(_record("registry.k8s.io/pause:3.9")) == pattern
    assert policy.protected_rule(_record("docker.io/library/pause:3.9")) == ""


def test_a_familiar_pattern_protects_the_normalized_name() -> None:
    policy = RemovalPolicy(protected_patterns=("busybox",))
    assert policy.protected_rule(_record("docker.io/library/busybox:latest")) == "busybox"


def test_namespaces_outside_the_allow_list_or_the_clients_grant_are_refused() -> None:
    RemovalPolicy(allowed_namespaces=frozenset({"k8s.io"})).check_namespace("k8s.io", ())
    with pytest.raises(NamespaceNotAllowed):
        RemovalPolicy(allowed_namespaces=frozenset({"k8s.io"})).check_namespace("default", ())
    granted = RemovalPolicy(identity_namespaces={"spiffe://node/agent": frozenset({"k8s.io"})})
    granted.check_namespace("k8s.io", ("uri:spiffe://node/agent",))
    with pytest.raises(NamespaceNotAllowed):
        granted.check_namespace("k8s.io", ("uri:spiffe://node/other",))
    with pytest.raises(NamespaceNotAllowed):  # a common name spelling the ID is not the ID
        granted.check_namespace("k8s.io", ("cn:spiffe://node/agent",))


def test_too_little_time_left_is_refused_before_anything_changes() -> None:
    policy = RemovalPolicy(min_deadline_s=5.0)
    policy.check_deadline(None)
    policy.check_deadline(time.monotonic() + 60)
    with pytest.raises(DeadlineExceeded):
        policy.check_deadline(time.monotonic() + 1)


def test_one_client_leaves_a_quarter_of_the_slots_to_the_others() -> None:
    limit = ConcurrencyLimit(8)
    assert limit.per_client == 6
    with contextlib.ExitStack() as held:
        for _ in range(8):  # alone on the node: every slot
            held.enter_context(limit.slot("busy"))
    with contextlib.ExitStack() as held:
        held.enter_context(limit.slot("other"))
        for _ in range(6):
            held.enter_context(limit.slot("busy"))
        with pytest.raises(TooManyRemovals):  # another client holds one: its share is six
            held.enter_context(limit.slot("busy"))
        held.enter_context(limit.slot("other"))  # the slot kept free for the others


async def test_prune_keeps_a_protected_dangling_parent() -> None:
    store = FakeStore()
    parent = store.put_manifest(["sha256:" + "3" * 64], note="parent")
    store.tag(f"moby-dangling@{parent.digest}", parent, **{PINNED_LABEL: "pinned"})
    child = store.tag("docker.io/library/app:latest", store.put_manifest(["sha256:" + "4" * 64]), parent=parent.digest)
    resolution = Resolution(child.image_id, child, (child,), None, "app")
    users = await ContainerUsers.load(store)

    async def parents(policy: RemovalPolicy) -> list[str]:
        services = Services(policy, OutcomeRecorder(trace.NoOpTracer(), None), ImageTurns(), 0.0, lambda work: None)
        call = Call(RemovalRequest("app", store.namespace), Progress(), store, services)
        return [p.image_id for p in await prunable_parents(call, resolution, users)]

    assert await parents(RemovalPolicy()) == []
    assert await parents(RemovalPolicy(allow_force_protected=True)) == []  # not forced
    store.records[f"moby-dangling@{parent.digest}"] = _record(f"moby-dangling@{parent.digest}")
    store.records[f"moby-dangling@{parent.digest}"] = ImageRecord(f"moby-dangling@{parent.digest}", parent)
    assert await parents(RemovalPolicy()) == [parent.digest]
