from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RemoveImageRequest(_message.Message):
    __slots__ = ("image", "namespace", "force", "no_prune", "platforms", "allow_missing", "request_id", "async_gc")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NO_PRUNE_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ASYNC_GC_FIELD_NUMBER: _ClassVar[int]
    image: str
    namespace: str
    force: bool
    no_prune: bool
    platforms: _containers.RepeatedCompositeFieldContainer[Platform]
    allow_missing: bool
    request_id: str
    async_gc: bool
    def __init__(self, image: _Optional[str] = ..., namespace: _Optional[str] = ..., force: _Optional[bool] = ..., no_prune: _Optional[bool] = ..., platforms: _Optional[_Iterable[_Union[Platform, _Mapping]]] = ..., allow_missing: _Optional[bool] = ..., request_id: _Optional[str] = ..., async_gc: _Optional[bool] = ...) -> None: ...

class Platform(_message.Message):
    __slots__ = ("os", "architecture", "variant")
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    os: str
    architecture: str
    variant: str
    def __init__(self, os: _Optional[str] = ..., architecture: _Optional[str] = ..., variant: _Optional[str] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("items", "truncated", "untagged_count", "deleted_count")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    UNTAGGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RemovedItem]
    truncated: bool
    untagged_count: int
    deleted_count: int
    def __init__(self, items: _Optional[_Iterable[_Union[RemovedItem, _Mapping]]] = ..., truncated: _Optional[bool] = ..., untagged_count: _Optional[int] = ..., deleted_count: _Optional[int] = ...) -> None: ...

class RemovedItem(_message.Message):
    __slots__ = ("untagged", "deleted")
    UNTAGGED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    untagged: str
    deleted: str
    def __init__(self, untagged: _Optional[str] = ..., deleted: _Optional[str] = ...) -> None: ...

class ImageUntagged(_message.Message):
    __slots__ = ("image_id", "name")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    name: str
    def __init__(self, image_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ImageDeleted(_message.Message):
    __slots__ = ("image_id",)
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    def __init__(self, image_id: _Optional[str] = ...) -> None: ...
