"""dockerd's containerd-store state, laid out through containerd's API, for tests that cannot run dockerd.

What moby's containerd image service leaves (daemon/containerd/image_snapshot.go, createLayer and
prepareInitLayer; daemon/start.go for the record), checked against a real dockerd on this containerd:
- `docker create`: a lease named by the container ID; under it `<id>-init` (committed) on the image's chain
  ID and `<id>` (active) on `<id>-init`. No containerd container record.
- `docker start`: dockerd mounts `<id>` itself and creates a container record with that ID, the image's
  record name and an empty snapshot key (the spec's root is the mounted path), then a runc task.
- the container stops: the task and the record go; the lease and the snapshots stay.
- `docker rm`: the lease is deleted, and garbage collection frees the snapshots.
- `--mount type=image,source=<image>`: an active snapshot `<id>-<image>` on that image's chain ID, under a
  lease of the same name (daemon/volumes.go, registerMountPoints).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from google.protobuf import any_pb2

from imageremoval.gen.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from imageremoval.gen.containerd.services.leases.v1 import leases_pb2
from imageremoval.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from imageremoval.server.domain.content import chain_id

from .ctr import Ctr
from .images import Manifest
from .store import Store

SNAPSHOTTER = "overlayfs"
_SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def chain_of(image: Manifest) -> str:
    """The chain ID of an image's layers: the committed snapshot its containers sit on."""
    return chain_id([layer.diff_id for layer in image.layers])


class DockerHost:
    """Containers of one namespace as dockerd keeps them in containerd; `close` removes them all."""

    def __init__(self, store: Store, ctr: Ctr, namespace: str, workdir: Path) -> None:
        self._store = store
        self._ctr = ctr
        self._ns = namespace
        self._workdir = workdir
        self._snapshots = snapshots_pb2_grpc.SnapshotsStub(store.channel)
        self._containers = containers_pb2_grpc.ContainersStub(store.channel)
        self._created: list[str] = []
        self._mounted: dict[str, Path] = {}

    def unpack(self, image_name: str) -> None:
        """Unpack the image into the snapshotter (as dockerd does before its first container)."""
        self._ctr(self._ns, "containers", "create", image_name, "unpack-only", "/bin/true")
        self._ctr(self._ns, "containers", "delete", "unpack-only")

    def create(self, container_id: str, image: Manifest) -> str:
        """`docker create`: the lease and the two snapshots, no container record. Returns the ID."""
        lease = self._store.md(self._ns, container_id)
        self._store.leases.Create(leases_pb2.CreateRequest(id=container_id), metadata=self._store.md(self._ns))
        self._created.append(container_id)
        init = f"{container_id}-init"
        self._snapshots.Prepare(
            snapshots_pb2.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=f"{init}-key", parent=chain_of(image)),
            metadata=lease,
        )
        self._snapshots.Commit(
            snapshots_pb2.CommitSnapshotRequest(snapshotter=SNAPSHOTTER, name=init, key=f"{init}-key"),
            metadata=lease,
        )
        self._snapshots.Prepare(
            snapshots_pb2.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=container_id, parent=init),
            metadata=lease,
        )
        return container_id

    def mount_image(self, container_id: str, image: Manifest, source: str) -> None:
        """`--mount type=image,source=...`: an active snapshot `<id>-<source>` on the image, under its own lease."""
        key = f"{container_id}-{source}"
        self._store.leases.Create(leases_pb2.CreateRequest(id=key), metadata=self._store.md(self._ns))
        self._created.append(key)
        self._snapshots.Prepare(
            snapshots_pb2.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=key, parent=chain_of(image)),
            metadata=self._store.md(self._ns, key),
        )

    def start(self, container_id: str, image_name: str) -> None:
        """`docker start`: mount the root filesystem here, a record without snapshot key, a real runc task."""
        rootfs = self._workdir / container_id / "rootfs"
        rootfs.mkdir(parents=True)
        reply = self._snapshots.Mounts(
            snapshots_pb2.MountsRequest(snapshotter=SNAPSHOTTER, key=container_id), metadata=self._store.md(self._ns)
        )
        for mount in reply.mounts:
            options = ["-o", ",".join(mount.options)] if mount.options else []
            subprocess.run(["mount", "-t", mount.type, *options, mount.source, str(rootfs)], check=True, timeout=30)
        self._mounted[container_id] = rootfs
        spec = json.loads(self._ctr(self._ns, "oci", "spec").stdout)
        spec["root"] = {"path": str(rootfs)}
        spec["process"]["args"] = ["/bin/sleep", "600"]
        spec["process"]["terminal"] = False
        spec["linux"]["cgroupsPath"] = f"/{self._ns}/{container_id}"
        record = containers_pb2.Container(
            id=container_id,
            image=image_name,
            runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2"),
            spec=any_pb2.Any(type_url=_SPEC_TYPE, value=json.dumps(spec).encode()),
        )
        self._containers.Create(
            containers_pb2.CreateContainerRequest(container=record), metadata=self._store.md(self._ns)
        )
        self._ctr(self._ns, "tasks", "start", "--null-io", "-d", container_id)

    def stop(self, container_id: str) -> None:
        """The container exits: its task and record go, its lease and snapshots stay."""
        self._ctr.stop_task(self._ns, container_id)
        self._ctr(self._ns, "tasks", "delete", "-f", container_id, check=False)
        try:
            self._containers.Delete(
                containers_pb2.DeleteContainerRequest(id=container_id), metadata=self._store.md(self._ns)
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        rootfs = self._mounted.pop(container_id, None)
        if rootfs is not None:
            subprocess.run(["umount", str(rootfs)], check=False, timeout=30)

    def remove(self, container_id: str) -> None:
        """`docker rm`: the lease goes, and a collection frees the snapshots."""
        self.stop(container_id)
        if container_id in self._created:
            self._created.remove(container_id)
            self._store.leases.Delete(
                leases_pb2.DeleteRequest(id=container_id, sync=True), metadata=self._store.md(self._ns)
            )

    def close(self) -> None:
        for container_id in list(self._mounted):
            self.stop(container_id)
        for container_id in list(self._created):
            self.remove(container_id)


@contextmanager
def docker_host(store: Store, ctr: Ctr, namespace: str, workdir: Path) -> Iterator[DockerHost]:
    host = DockerHost(store, ctr, namespace, workdir)
    try:
        yield host
    finally:
        host.close()
