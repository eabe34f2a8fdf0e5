"""Server reflection over our API alone, with its comments: the default pool would also describe containerd's
internal .proto files, and would drop every comment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2  # noqa: F401 (registers reflection.proto)

# api/generate.py writes our API's descriptors with source info (comments) beside the generated modules.
DOCUMENTED_PACKAGE = "imageremoval.gen.v1"


def documented_files(package: str = DOCUMENTED_PACKAGE) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """File name -> its FileDescriptorProto with comments, from the package's *.binpb descriptor sets."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for entry in resources.files(package).iterdir():
        if entry.name.endswith(".binpb"):
            for proto in descriptor_pb2.FileDescriptorSet.FromString(entry.read_bytes()).file:
                files[proto.name] = proto
    return files


class _File:
    """A file descriptor as the reflection servicer reads it (name, dependencies, CopyToProto), whose
    CopyToProto keeps the comments when we have them (the library's drops source_code_info)."""

    def __init__(self, file: descriptor.FileDescriptor, documented: Mapping[str, descriptor_pb2.FileDescriptorProto]):
        self._file, self._documented = file, documented
        self.name = file.name

    @property
    def dependencies(self) -> list[_File]:
        return [_File(dependency, self._documented) for dependency in self._file.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:  # noqa: N802 (descriptor API)
        documented = self._documented.get(self.name)
        if documented is None:
            self._file.CopyToProto(proto)
        else:
            proto.CopyFrom(documented)


class PublishedPool:
    """A descriptor pool of just the files that declare the served services (and what they import); a
    method's name finds its service's file, as grpcurl's `describe Service.Method` asks (the upb pool only
    knows messages, fields, enums and services)."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self._pool = descriptor_pool.DescriptorPool()
        self._documented = documented_files()
        for name in service_names:
            self._add(descriptor_pool.Default().FindServiceByName(name).file)

    def _add(self, file: descriptor.FileDescriptor) -> None:
        for dependency in file.dependencies:
            self._add(dependency)
        try:
            self._pool.FindFileByName(file.name)
        except KeyError:
            self._pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))

    def FindFileByName(self, name: str) -> _File:  # noqa: N802 (pool API)
        return _File(self._pool.FindFileByName(name), self._documented)

    def FindFileContainingSymbol(self, symbol: str) -> _File:  # noqa: N802 (pool API)
        try:
            found = self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service, _, method = symbol.rpartition(".")
            if not service or method not in self._methods(service):
                raise
            found = self._pool.FindFileContainingSymbol(service)
        return _File(found, self._documented)

    def _methods(self, service: str) -> Sequence[str]:
        try:
            return list(self._pool.FindServiceByName(service).methods_by_name)
        except KeyError:
            return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)  # FindMessageTypeByName, FindExtensionByNumber, FindAllExtensions


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve grpc.reflection.v1alpha for service_names, describing only the files that declare them."""
    names = (*service_names, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server, pool=PublishedPool(names))  # type: ignore[arg-type]
