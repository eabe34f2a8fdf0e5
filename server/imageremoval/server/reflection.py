"""Server reflection over our API alone: the default pool would also describe containerd's internal .proto files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2  # noqa: F401 (registers reflection.proto)


class PublishedPool:
    """A descriptor pool of just the files that declare the served services (and what they import); a
    method's name finds its service's file, as grpcurl's `describe Service.Method` asks (the upb pool only
    knows messages, fields, enums and services)."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self._pool = descriptor_pool.DescriptorPool()
        for name in service_names:
            self._add(descriptor_pool.Default().FindServiceByName(name).file)

    def _add(self, file: descriptor.FileDescriptor) -> None:
        for dependency in file.dependencies:
            self._add(dependency)
        try:
            self._pool.FindFileByName(file.name)
        except KeyError:
            self._pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))

    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:  # noqa: N802 (pool API)
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service, _, method = symbol.rpartition(".")
            if service and method in self._services_methods(service):
                return self._pool.FindFileContainingSymbol(service)
            raise

    def _services_methods(self, service: str) -> Sequence[str]:
        try:
            return list(self._pool.FindServiceByName(service).methods_by_name)
        except KeyError:
            return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)  # FindFileByName, FindMessageTypeByName, FindExtensionByNumber, ...


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve grpc.reflection.v1alpha for service_names, describing only the published files."""
    names = (*service_names, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server, pool=PublishedPool(names))  # type: ignore[arg-type]
