"""The Kubernetes manifests, parsed: the fields a node-local deployment of the service depends on."""

from __future__ import annotations

import ipaddress
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from imageremoval.server.config import DRAIN_DELAY, GRACE_PERIOD, load_config

MANIFESTS = Path(__file__).parent.parent / "deploy" / "kubernetes"
HOST_CONTAINERD_SOCKET = PurePosixPath("/run/containerd/containerd.sock")

Doc = dict[str, Any]


def _documents() -> list[Doc]:
    docs: list[Doc] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        with path.open() as f:
            docs.extend(doc for doc in yaml.safe_load_all(f) if doc is not None)
    return docs


def _one(kind: str) -> Doc:
    found = [doc for doc in _documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def daemonset() -> Doc:
    return _one("DaemonSet")


@pytest.fixture(scope="module")
def pod(daemonset: Doc) -> Doc:
    spec: Doc = daemonset["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: Doc) -> Doc:
    containers: list[Doc] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


def _argv(container: Doc) -> list[str]:
    return [str(a) for a in container.get("args", [])]


def _flags(container: Doc) -> dict[str, str]:
    """`--flag value` pairs of the server's arguments; a flag with no value (--insecure) maps to ""."""
    argv = _argv(container)
    flags: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            name, _, inline = arg.partition("=")
            following = argv[i + 1] if i + 1 < len(argv) else "--"
            flags[name] = inline or ("" if following.startswith("--") else following)
    return flags


def _port(container: Doc, name: str) -> int:
    ports = {p["name"]: p for p in container["ports"]}
    assert name in ports, f"no container port named {name!r}"
    assert ports[name].get("protocol", "TCP") == "TCP"
    number: int = ports[name]["containerPort"]
    return number


def _listen_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_manifests_are_kubernetes_objects() -> None:
    docs = _documents()
    assert docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


def test_one_server_per_node_runs_the_imageremoval_server(daemonset: Doc, container: Doc) -> None:
    assert daemonset["apiVersion"] == "apps/v1"
    selector = daemonset["spec"]["selector"]["matchLabels"]
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert container["image"] == "imageremoval:0.1.0"
    assert container["command"] == ["imageremoval-server"]


def test_the_hosts_containerd_socket_is_what_the_server_dials(pod: Doc, container: Doc) -> None:
    address = PurePosixPath(_flags(container)["--containerd-address"].removeprefix("unix://"))
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        mount_path = PurePosixPath(mount["mountPath"])
        if address == mount_path or mount_path in address.parents:
            host_path = volumes[mount["name"]]["hostPath"]
            on_host = PurePosixPath(host_path["path"]) / address.relative_to(mount_path)
            assert on_host == HOST_CONTAINERD_SOCKET
            assert host_path["type"] in {"Directory", "Socket"}
            return
    pytest.fail(f"--containerd-address {address} is not inside any volume mount")


def test_the_grpc_port_is_named_and_is_where_the_server_listens(container: Doc) -> None:
    flags = _flags(container)
    assert _port(container, "grpc") == _listen_port(flags["--listen"])
    assert _port(container, "metrics") == _listen_port(flags["--metrics-listen"])


def test_plaintext_on_a_pod_address_is_asked_for_explicitly(container: Doc) -> None:
    flags = _flags(container)
    host = flags["--listen"].rpartition(":")[0].strip("[]")
    if not ipaddress.ip_address(host).is_loopback and "--tls-cert" not in flags:
        assert "--insecure" in flags


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_probes_use_grpc_health_on_the_grpc_port(container: Doc, probe: str) -> None:
    assert container[probe]["grpc"]["port"] == _port(container, "grpc")
    # The server registers health for "" (the whole server); a probe naming another service never passes.
    assert container[probe]["grpc"].get("service", "") in {"", "imageremoval.v1.ImageRemovalService"}


def test_liveness_outlasts_the_drain(container: Doc) -> None:
    flags = _flags(container)
    drain = float(flags.get("--drain-delay", DRAIN_DELAY.default))
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > drain


def test_termination_grace_exceeds_drain_delay_plus_grace_period(pod: Doc, container: Doc) -> None:
    flags = _flags(container)
    drain = float(flags.get("--drain-delay", DRAIN_DELAY.default))
    grace = float(flags.get("--grace-period", GRACE_PERIOD.default))
    assert pod["terminationGracePeriodSeconds"] > drain + grace


def test_kubernetes_images_are_the_only_namespace(container: Doc) -> None:
    flags = _flags(container)
    assert flags["--namespace"] == "k8s.io"
    assert flags["--allowed-namespaces"].split(",") == ["k8s.io"]


def test_root_for_the_socket_and_nothing_more(pod: Doc, container: Doc) -> None:
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security["capabilities"].get("add")
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    assert pod["automountServiceAccountToken"] is False


def test_the_service_reaches_the_local_nodes_server(daemonset: Doc) -> None:
    service = _one("Service")
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert (grpc["targetPort"], grpc["appProtocol"]) == ("grpc", "grpc")


def test_the_server_accepts_the_manifests_arguments(container: Doc) -> None:
    config = load_config(_argv(container), environ={})
    assert config.namespace == "k8s.io"
    assert config.containerd_address == _flags(container)["--containerd-address"]
