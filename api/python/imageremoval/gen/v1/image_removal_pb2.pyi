import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgeBasis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGE_BASIS_UNSPECIFIED: _ClassVar[AgeBasis]
    AGE_BASIS_UNKNOWN: _ClassVar[AgeBasis]
    AGE_BASIS_OBSERVED_USE: _ClassVar[AgeBasis]
    AGE_BASIS_FIRST_SEEN_ONLY: _ClassVar[AgeBasis]

class SkipReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SKIP_REASON_UNSPECIFIED: _ClassVar[SkipReason]
    SKIP_REASON_IN_USE: _ClassVar[SkipReason]
    SKIP_REASON_PROTECTED: _ClassVar[SkipReason]
    SKIP_REASON_KEPT: _ClassVar[SkipReason]
    SKIP_REASON_PARENT_OF_KEPT: _ClassVar[SkipReason]
    SKIP_REASON_CHANGED: _ClassVar[SkipReason]
    SKIP_REASON_FAILED: _ClassVar[SkipReason]
    SKIP_REASON_TOO_YOUNG: _ClassVar[SkipReason]
AGE_BASIS_UNSPECIFIED: AgeBasis
AGE_BASIS_UNKNOWN: AgeBasis
AGE_BASIS_OBSERVED_USE: AgeBasis
AGE_BASIS_FIRST_SEEN_ONLY: AgeBasis
SKIP_REASON_UNSPECIFIED: SkipReason
SKIP_REASON_IN_USE: SkipReason
SKIP_REASON_PROTECTED: SkipReason
SKIP_REASON_KEPT: SkipReason
SKIP_REASON_PARENT_OF_KEPT: SkipReason
SKIP_REASON_CHANGED: SkipReason
SKIP_REASON_FAILED: SkipReason
SKIP_REASON_TOO_YOUNG: SkipReason

class RemoveImageRequest(_message.Message):
    __slots__ = ("image", "namespace", "force", "no_prune", "platforms", "allow_missing", "validate_only", "request_id", "async_gc")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NO_PRUNE_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ASYNC_GC_FIELD_NUMBER: _ClassVar[int]
    image: str
    namespace: str
    force: bool
    no_prune: bool
    platforms: _containers.RepeatedCompositeFieldContainer[Platform]
    allow_missing: bool
    validate_only: bool
    request_id: str
    async_gc: bool
    def __init__(self, image: _Optional[str] = ..., namespace: _Optional[str] = ..., force: _Optional[bool] = ..., no_prune: _Optional[bool] = ..., platforms: _Optional[_Iterable[_Union[Platform, _Mapping]]] = ..., allow_missing: _Optional[bool] = ..., validate_only: _Optional[bool] = ..., request_id: _Optional[str] = ..., async_gc: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("items", "reclaimable_bytes", "truncated", "untagged_count", "deleted_count")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RECLAIMABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    UNTAGGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RemovedItem]
    reclaimable_bytes: int
    truncated: bool
    untagged_count: int
    deleted_count: int
    def __init__(self, items: _Optional[_Iterable[_Union[RemovedItem, _Mapping]]] = ..., reclaimable_bytes: _Optional[int] = ..., truncated: _Optional[bool] = ..., untagged_count: _Optional[int] = ..., deleted_count: _Optional[int] = ...) -> None: ...

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

class ListImagesRequest(_message.Message):
    __slots__ = ("namespace", "selector", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    selector: ImageSelector
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., selector: _Optional[_Union[ImageSelector, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    next_page_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("id", "names", "created", "dangling", "labels", "platforms", "running_containers", "stopped_containers", "protected", "protected_rule", "content_bytes", "snapshot_bytes", "unique_bytes", "first_seen", "last_used", "age_basis")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    DANGLING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_RULE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    AGE_BASIS_FIELD_NUMBER: _ClassVar[int]
    id: str
    names: _containers.RepeatedScalarFieldContainer[str]
    created: _timestamp_pb2.Timestamp
    dangling: bool
    labels: _containers.ScalarMap[str, str]
    platforms: _containers.RepeatedCompositeFieldContainer[Platform]
    running_containers: int
    stopped_containers: int
    protected: bool
    protected_rule: str
    content_bytes: int
    snapshot_bytes: int
    unique_bytes: int
    first_seen: _timestamp_pb2.Timestamp
    last_used: _timestamp_pb2.Timestamp
    age_basis: AgeBasis
    def __init__(self, id: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dangling: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., platforms: _Optional[_Iterable[_Union[Platform, _Mapping]]] = ..., running_containers: _Optional[int] = ..., stopped_containers: _Optional[int] = ..., protected: _Optional[bool] = ..., protected_rule: _Optional[str] = ..., content_bytes: _Optional[int] = ..., snapshot_bytes: _Optional[int] = ..., unique_bytes: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., age_basis: _Optional[_Union[AgeBasis, str]] = ...) -> None: ...

class ImageSelector(_message.Message):
    __slots__ = ("all_unused", "created_before", "labels", "references", "keep_latest_per_repository", "unused_for")
    ALL_UNUSED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    KEEP_LATEST_PER_REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    UNUSED_FOR_FIELD_NUMBER: _ClassVar[int]
    all_unused: bool
    created_before: _timestamp_pb2.Timestamp
    labels: _containers.RepeatedCompositeFieldContainer[LabelMatch]
    references: _containers.RepeatedScalarFieldContainer[str]
    keep_latest_per_repository: int
    unused_for: _duration_pb2.Duration
    def __init__(self, all_unused: _Optional[bool] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Iterable[_Union[LabelMatch, _Mapping]]] = ..., references: _Optional[_Iterable[str]] = ..., keep_latest_per_repository: _Optional[int] = ..., unused_for: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LabelMatch(_message.Message):
    __slots__ = ("key", "value", "negate")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    negate: bool
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., negate: _Optional[bool] = ...) -> None: ...

class PlanPruneRequest(_message.Message):
    __slots__ = ("namespace", "selector")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    selector: ImageSelector
    def __init__(self, namespace: _Optional[str] = ..., selector: _Optional[_Union[ImageSelector, _Mapping]] = ...) -> None: ...

class PrunePlan(_message.Message):
    __slots__ = ("namespace", "images", "skipped", "reclaimable_bytes", "resources", "created", "selector", "key_id", "signature")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    RECLAIMABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    images: _containers.RepeatedCompositeFieldContainer[PlannedImage]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedImage]
    reclaimable_bytes: int
    resources: _containers.RepeatedCompositeFieldContainer[PlannedResource]
    created: _timestamp_pb2.Timestamp
    selector: ImageSelector
    key_id: str
    signature: bytes
    def __init__(self, namespace: _Optional[str] = ..., images: _Optional[_Iterable[_Union[PlannedImage, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[SkippedImage, _Mapping]]] = ..., reclaimable_bytes: _Optional[int] = ..., resources: _Optional[_Iterable[_Union[PlannedResource, _Mapping]]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., selector: _Optional[_Union[ImageSelector, _Mapping]] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PlannedImage(_message.Message):
    __slots__ = ("image", "reason", "records")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    image: Image
    reason: str
    records: _containers.RepeatedCompositeFieldContainer[PlannedRecord]
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., reason: _Optional[str] = ..., records: _Optional[_Iterable[_Union[PlannedRecord, _Mapping]]] = ...) -> None: ...

class PlannedRecord(_message.Message):
    __slots__ = ("name", "target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: str
    def __init__(self, name: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class PlannedResource(_message.Message):
    __slots__ = ("blob", "snapshotter", "snapshot", "bytes", "images")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTTER_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    blob: str
    snapshotter: str
    snapshot: str
    bytes: int
    images: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, blob: _Optional[str] = ..., snapshotter: _Optional[str] = ..., snapshot: _Optional[str] = ..., bytes: _Optional[int] = ..., images: _Optional[_Iterable[int]] = ...) -> None: ...

class SkippedImage(_message.Message):
    __slots__ = ("image", "reason", "detail")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    image: Image
    reason: SkipReason
    detail: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., reason: _Optional[_Union[SkipReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ExecutePruneRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: PrunePlan
    def __init__(self, plan: _Optional[_Union[PrunePlan, _Mapping]] = ...) -> None: ...

class PruneProgress(_message.Message):
    __slots__ = ("removed", "skipped", "summary", "planned")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    removed: RemovedImage
    skipped: SkippedImage
    summary: PruneSummary
    planned: PlannedImage
    def __init__(self, removed: _Optional[_Union[RemovedImage, _Mapping]] = ..., skipped: _Optional[_Union[SkippedImage, _Mapping]] = ..., summary: _Optional[_Union[PruneSummary, _Mapping]] = ..., planned: _Optional[_Union[PlannedImage, _Mapping]] = ...) -> None: ...

class RemovedImage(_message.Message):
    __slots__ = ("image_id", "items")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    items: _containers.RepeatedCompositeFieldContainer[RemovedItem]
    def __init__(self, image_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[RemovedItem, _Mapping]]] = ...) -> None: ...

class PruneSummary(_message.Message):
    __slots__ = ("images_removed", "images_skipped", "planned_bytes", "freed_bytes", "target_bytes", "stop_reason", "usage_percent_before", "usage_percent_after")
    IMAGES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    PLANNED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TARGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_PERCENT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    USAGE_PERCENT_AFTER_FIELD_NUMBER: _ClassVar[int]
    images_removed: int
    images_skipped: int
    planned_bytes: int
    freed_bytes: int
    target_bytes: int
    stop_reason: str
    usage_percent_before: float
    usage_percent_after: float
    def __init__(self, images_removed: _Optional[int] = ..., images_skipped: _Optional[int] = ..., planned_bytes: _Optional[int] = ..., freed_bytes: _Optional[int] = ..., target_bytes: _Optional[int] = ..., stop_reason: _Optional[str] = ..., usage_percent_before: _Optional[float] = ..., usage_percent_after: _Optional[float] = ...) -> None: ...

class ReclaimSpaceRequest(_message.Message):
    __slots__ = ("namespace", "target_free_bytes", "target_usage_percent", "dry_run")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TARGET_USAGE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    target_free_bytes: int
    target_usage_percent: float
    dry_run: bool
    def __init__(self, namespace: _Optional[str] = ..., target_free_bytes: _Optional[int] = ..., target_usage_percent: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...
