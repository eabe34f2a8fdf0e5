from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    INVALID_REFERENCE: _ClassVar[ErrorReason]
    AMBIGUOUS_REFERENCE: _ClassVar[ErrorReason]
    INVALID_NAMESPACE: _ClassVar[ErrorReason]
    INVALID_PLATFORM: _ClassVar[ErrorReason]
    FORCE_REQUIRED: _ClassVar[ErrorReason]
    IMAGE_NOT_FOUND: _ClassVar[ErrorReason]
    PLATFORM_NOT_FOUND: _ClassVar[ErrorReason]
    IMAGE_CONFLICT: _ClassVar[ErrorReason]
    IMAGE_CHANGED: _ClassVar[ErrorReason]
    CONTAINERD_UNAVAILABLE: _ClassVar[ErrorReason]
    CONTAINERD_ERROR: _ClassVar[ErrorReason]
    DEADLINE_EXCEEDED: _ClassVar[ErrorReason]
    NAMESPACE_NOT_ALLOWED: _ClassVar[ErrorReason]
    IMAGE_PROTECTED: _ClassVar[ErrorReason]
    TOO_MANY_REMOVALS: _ClassVar[ErrorReason]
    REQUEST_TOO_LARGE: _ClassVar[ErrorReason]
    MALFORMED_REQUEST: _ClassVar[ErrorReason]
    PLATFORM_SHARED: _ClassVar[ErrorReason]
    REMOVAL_INCOMPLETE: _ClassVar[ErrorReason]
    INVALID_SELECTOR: _ClassVar[ErrorReason]
    INVALID_PAGE_TOKEN: _ClassVar[ErrorReason]
    INVALID_PLAN: _ClassVar[ErrorReason]
    OUTCOME_UNKNOWN: _ClassVar[ErrorReason]
    INVALID_REQUEST_ID: _ClassVar[ErrorReason]
    INVALID_RECLAIM_TARGET: _ClassVar[ErrorReason]
    RECLAIM_UNAVAILABLE: _ClassVar[ErrorReason]
    INTERNAL: _ClassVar[ErrorReason]

class ConflictKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFLICT_KIND_UNSPECIFIED: _ClassVar[ConflictKind]
    RUNNING_CONTAINER: _ClassVar[ConflictKind]
    STOPPED_CONTAINER: _ClassVar[ConflictKind]
    MULTIPLE_REFERENCES: _ClassVar[ConflictKind]
ERROR_REASON_UNSPECIFIED: ErrorReason
INVALID_REFERENCE: ErrorReason
AMBIGUOUS_REFERENCE: ErrorReason
INVALID_NAMESPACE: ErrorReason
INVALID_PLATFORM: ErrorReason
FORCE_REQUIRED: ErrorReason
IMAGE_NOT_FOUND: ErrorReason
PLATFORM_NOT_FOUND: ErrorReason
IMAGE_CONFLICT: ErrorReason
IMAGE_CHANGED: ErrorReason
CONTAINERD_UNAVAILABLE: ErrorReason
CONTAINERD_ERROR: ErrorReason
DEADLINE_EXCEEDED: ErrorReason
NAMESPACE_NOT_ALLOWED: ErrorReason
IMAGE_PROTECTED: ErrorReason
TOO_MANY_REMOVALS: ErrorReason
REQUEST_TOO_LARGE: ErrorReason
MALFORMED_REQUEST: ErrorReason
PLATFORM_SHARED: ErrorReason
REMOVAL_INCOMPLETE: ErrorReason
INVALID_SELECTOR: ErrorReason
INVALID_PAGE_TOKEN: ErrorReason
INVALID_PLAN: ErrorReason
OUTCOME_UNKNOWN: ErrorReason
INVALID_REQUEST_ID: ErrorReason
INVALID_RECLAIM_TARGET: ErrorReason
RECLAIM_UNAVAILABLE: ErrorReason
INTERNAL: ErrorReason
CONFLICT_KIND_UNSPECIFIED: ConflictKind
RUNNING_CONTAINER: ConflictKind
STOPPED_CONTAINER: ConflictKind
MULTIPLE_REFERENCES: ConflictKind
