"""The Helm chart, rendered by helm and validated against two Kubernetes versions' schemas, for k8s and k3s."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from imageremoval.server.config import load_config

ROOT = Path(__file__).parent.parent
CHART = ROOT / "deploy" / "helm" / "imageremoval"
HELM = ROOT / "build" / "tools" / "helm"
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
VALUES = {"k8s": [], "k3s": ["-f", str(CHART / "values-k3s.yaml")]}
TLS = ["--set", "tls.enabled=true,tls.certManager.enabled=true"]
# Rendered copies for `kubectl apply -f` without helm; `make manifests` rewrites them.
RENDERED = {
    "k8s": ROOT / "deploy" / "kubernetes" / "imageremoval.yaml",
    "k3s": ROOT / "deploy" / "kubernetes" / "k3s" / "imageremoval.yaml",
}

Doc = dict[str, Any]


def _helm() -> Path:
    if not HELM.exists():
        message = f"{HELM} is missing: `make helm` builds it (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return HELM


def render_text(flavour: str, version: str = KUBERNETES_VERSIONS[0], *extra: str) -> str:
    command = [
        str(_helm()),
        "template",
        "imageremoval",
        str(CHART),
        "--kube-version",
        version,
        *VALUES[flavour],
        *extra,
    ]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


def render(flavour: str, version: str = KUBERNETES_VERSIONS[0], *extra: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(render_text(flavour, version, *extra)) if doc]


def _one(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container(docs: list[Doc]) -> Doc:
    container: Doc = _one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    return container


def _args(docs: list[Doc]) -> list[str]:
    return [str(a) for a in _container(docs)["args"]]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("flavour", sorted(VALUES))
@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_every_rendered_object_is_valid_for_the_kubernetes_version(flavour: str, version: str, tls: bool) -> None:
    docs = render(flavour, version, *(TLS if tls else []))
    kinds = {doc["kind"] for doc in docs}
    assert {"Namespace", "ServiceAccount", "DaemonSet", "Service", "NetworkPolicy"} <= kinds
    for doc in docs:
        if doc["apiVersion"] == "cert-manager.io/v1":
            continue  # a CRD: no schema ships with Kubernetes; its fields are checked below
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_broken_object_is_refused_by_the_validator() -> None:
    daemonset = _one(render("k8s"), "DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(("flavour", "host_dir"), [("k8s", "/run/containerd"), ("k3s", "/run/k3s/containerd")])
def test_the_server_dials_the_nodes_containerd_socket(flavour: str, host_dir: str) -> None:
    docs = render(flavour)
    pod = _one(docs, "DaemonSet")["spec"]["template"]["spec"]
    args = _args(docs)
    socket = Path(args[args.index("--containerd-address") + 1])
    mount = next(m for m in _container(docs)["volumeMounts"] if socket.is_relative_to(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert (
        Path(volume["hostPath"]["path"]) / socket.relative_to(mount["mountPath"]) == Path(host_dir) / "containerd.sock"
    )
    assert args[args.index("--namespace") + 1] == "k8s.io"
    assert load_config(args, environ={}).containerd_address == str(socket)


def test_the_namespace_admits_the_hostpath_and_warns_about_the_rest() -> None:
    labels = _one(render("k8s"), "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_only_chosen_pods_reach_the_grpc_port() -> None:
    docs = render("k8s")
    policy = _one(docs, "NetworkPolicy")["spec"]
    pod_labels = _one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    grpc_rule = next(r for r in policy["ingress"] if r["ports"][0]["port"] == "grpc")
    assert grpc_rule["from"] and all(peer.get("podSelector") for peer in grpc_rule["from"])
    assert policy["egress"] == []


def test_with_tls_the_probes_use_the_plaintext_health_listener(tmp_path: Path) -> None:
    docs = render("k8s", KUBERNETES_VERSIONS[0], *TLS)
    container = _container(docs)
    args = _args(docs)
    health = args[args.index("--health-listen") + 1]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(health.rpartition(":")[2]) == ports["health"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["health"] != ports["grpc"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
    secret = next(v for v in _one(docs, "DaemonSet")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    certificate = _one(docs, "Certificate")
    assert secret["secret"]["secretName"] == certificate["spec"]["secretName"]
    # The server accepts these arguments, with the Secret's files where the mount puts them.
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("x")
    local = [a.replace(mount["mountPath"], str(tmp_path)) for a in args]
    config = load_config(local, environ={})
    assert config.tls is not None and config.tls.client_ca == tmp_path / "ca.crt"
    assert config.health_listen == health


def test_the_root_user_is_only_asked_for_the_socket() -> None:
    docs = render("k8s", KUBERNETES_VERSIONS[0], "--set", "runAsUser=65532,socketGroup=990")
    pod = _one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["supplementalGroups"] == [990]
    assert _one(render("k8s"), "DaemonSet")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 0
    security = _container(docs)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["capabilities"]["drop"] == ["ALL"]
    assert _container(docs)["resources"]["limits"]["memory"]


@pytest.mark.parametrize("flavour", sorted(RENDERED))
def test_the_plain_manifests_are_the_charts_rendering(flavour: str) -> None:
    assert RENDERED[flavour].read_text() == render_text(flavour), "run `make manifests`"
