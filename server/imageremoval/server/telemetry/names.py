"""Span, metric, log-field and event names in one place, so the server, the tests, the dashboards and the docs agree.

Conventions for new instruments (ListImages, PlanPrune, ExecutePrune and later ones add theirs to METRICS):
OpenTelemetry names `imageremoval.<noun>[.<verb>]`, UCUM units in base units (`s`, `By`, `{thing}` for counts),
label keys from the ATTR_METRIC_* below, every outcome counted (success, missing, cancelled, or the gRPC status in
lower case with the ErrorInfo reason). The Prometheus endpoint shows each as `prometheus` below.
"""

from __future__ import annotations

from dataclasses import dataclass

TRACER_NAME = "imageremoval"
# The semantic-conventions schema our attribute names follow (RPC: rpc.system.name, rpc.response.status_code...).
SCHEMA_URL = "https://opentelemetry.io/schemas/1.38.0"

# One span per removal phase, children of the RPC's server span.
SPAN_RESOLVE = "resolve"
SPAN_WALK = "walk"
SPAN_CHECK_CONFLICTS = "check-conflicts"
SPAN_DELETE = "delete"
SPAN_PRUNE_PARENTS = "prune-parents"
SPAN_RELEASE_SNAPSHOTS = "release-snapshots"
SPAN_EVENTS = "events"
PHASES = (
    SPAN_RESOLVE,
    SPAN_WALK,
    SPAN_CHECK_CONFLICTS,
    SPAN_DELETE,
    SPAN_PRUNE_PARENTS,
    SPAN_RELEASE_SNAPSHOTS,
    SPAN_EVENTS,
)

ATTR_NAMESPACE = "imageremoval.namespace"
ATTR_REFERENCE = "imageremoval.reference"
ATTR_IMAGE_ID = "imageremoval.image_id"
ATTR_FORCE = "imageremoval.force"
ATTR_ACTION = "imageremoval.action"  # untag, delete, soft-untag or platforms
ATTR_REFERENCES = "imageremoval.references.count"
ATTR_BLOBS_WALKED = "imageremoval.blobs.count"
ATTR_BYTES = "imageremoval.image.bytes"
ATTR_CONTAINERS_CHECKED = "imageremoval.containers.count"
ATTR_ITEMS = "imageremoval.items.count"
ATTR_PARENTS = "imageremoval.parents.count"
ATTR_CONFIGS_RELEASED = "imageremoval.configs_released.count"
ATTR_EVENTS = "imageremoval.events.count"
ATTR_OUTCOME = "imageremoval.outcome"
ATTR_REASON = "imageremoval.error.reason"

EVENT_REFUSED = "imageremoval.refused"

# RPC semantic conventions (current, stable candidate), on server and containerd client spans and metrics.
RPC_SYSTEM_NAME = "rpc.system.name"
RPC_METHOD = "rpc.method"  # fully qualified: imageremoval.v1.ImageRemovalService/RemoveImage
RPC_STATUS = "rpc.response.status_code"  # the status code's name: OK, NOT_FOUND...
ERROR_TYPE = "error.type"  # the status code's name, only when the call failed (server: see SERVER_ERRORS)
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
CLIENT_ADDRESS = "client.address"
CLIENT_PORT = "client.port"
PEER_ADDRESS = "network.peer.address"
PEER_PORT = "network.peer.port"
TRANSPORT = "network.transport"
# The experimental conventions (schema 1.11), emitted as well only with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup.
OLD_RPC_SYSTEM = "rpc.system"
OLD_RPC_SERVICE = "rpc.service"
OLD_RPC_STATUS = "rpc.grpc.status_code"
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
SEMCONV_DUP = "rpc/dup"
# Status codes that are server errors (span status ERROR, error.type set); the rest are answers.
SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})
# containerd answers the adapter turns into results (absent blob, name already taken): not error spans.
CONTAINERD_ANSWERS = frozenset({"OK", "NOT_FOUND", "ALREADY_EXISTS"})

# Metrics (OpenTelemetry names; the Prometheus endpoint shows them with units and _total, see METRICS).
METER_NAME = "imageremoval"
METRIC_REMOVAL_DURATION = "imageremoval.removal.duration"
METRIC_IMAGES_DELETED = "imageremoval.images.deleted"
METRIC_REFERENCES_UNTAGGED = "imageremoval.references.untagged"
METRIC_BYTES_RECLAIMED = "imageremoval.reclaimed"
METRIC_CONFLICTS = "imageremoval.conflicts"
METRIC_REMOVALS = "imageremoval.removals"
METRIC_REJECTED = "imageremoval.requests.rejected"
METRIC_BUILD_INFO = "imageremoval.build.info"
METRIC_CONTAINERD_UP = "imageremoval.containerd.up"
METRIC_RPC_DURATION = "rpc.server.call.duration"
METRIC_OLD_RPC_DURATION = "rpc.server.duration"  # milliseconds; only with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup
# ReclaimSpace and the reclaim loop (the figures KEP-6053 asks kubelet for), and usage tracking (issue 15).
METRIC_RECLAIM_PENDING = "imageremoval.reclaim.pending"  # gauge, By, {namespace}
METRIC_RECLAIM_LAST_SUCCESS = "imageremoval.reclaim.last_success_timestamp"  # gauge, s: Unix time
METRIC_RECLAIM_TARGETED = "imageremoval.reclaim.targeted"  # counter, By, {trigger}
METRIC_RECLAIM_FREED = "imageremoval.reclaim.freed"  # counter, By, {trigger}: measured after collection
METRIC_RECLAIM_IMAGES = "imageremoval.reclaim.images"  # counter, {trigger, outcome, reason}
METRIC_RECLAIM_RUNS = "imageremoval.reclaim.runs"  # counter, {trigger, stop_reason}
METRIC_RECLAIM_FS_USAGE = "imageremoval.reclaim.filesystem.usage_ratio"  # gauge, 1: used/size of containerd's root
METRIC_USAGE_WRITES = "imageremoval.usage.label_writes"  # counter, {source}: event or sweep

ATTR_METRIC_ACTION = "action"
ATTR_METRIC_OUTCOME = "outcome"
ATTR_METRIC_REASON = "reason"
ATTR_METRIC_CONFLICT = "conflict"
ATTR_METRIC_FORCEABLE = "forceable"
ATTR_METRIC_NAMESPACE = "namespace"
ATTR_METRIC_VERSION = "version"
ATTR_METRIC_TRIGGER = "trigger"  # rpc or loop
ATTR_METRIC_STOP_REASON = "stop_reason"
ATTR_METRIC_SOURCE = "source"

ACTION_DELETE = "delete"
ACTION_UNTAG = "untag"
ACTION_PRUNE = "prune"
OUTCOME_SUCCESS = "success"
OUTCOME_MISSING = "missing"
OUTCOME_CANCELLED = "cancelled"

# Label sets.
_SEMCONV_RPC = ("rpc_system_name", "rpc_method", "rpc_response_status_code")


@dataclass(frozen=True)
class MetricSpec:
    """One metric family as Prometheus shows it: the contract the scrape test, the dashboard and the README share."""

    prometheus: str  # the family name (samples add _bucket/_sum/_count to histograms)
    kind: str  # counter, histogram, gauge, info
    unit: str  # base unit, "" for counts and info
    labels: tuple[str, ...]  # always present
    optional: tuple[str, ...] = ()  # present on some series (error_type on failures)
    otel: str = ""  # the OpenTelemetry instrument name ("" for the Prometheus client's own collectors)
    # always; dup (only with rpc/dup); later (the reclaim gauges: exported once a reclaim has run); on-use (the
    # other reclaim and usage instruments: exported once a reclaim ran or a usage label was written)
    exported: str = "always"
    meaning: str = ""


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "imageremoval_removals_total",
        "counter",
        "",
        ("action", "outcome", "reason"),
        otel=METRIC_REMOVALS,
        meaning="removal calls by outcome; reason is the ErrorInfo reason, empty on success",
    ),
    MetricSpec(
        "imageremoval_removal_duration_seconds",
        "histogram",
        "seconds",
        ("action", "outcome"),
        otel=METRIC_REMOVAL_DURATION,
        meaning="duration of each removal call, and of each prune phase (action prune)",
    ),
    MetricSpec(
        "imageremoval_images_deleted_total",
        "counter",
        "",
        ("namespace",),
        otel=METRIC_IMAGES_DELETED,
        meaning="images (and platform manifests) deleted",
    ),
    MetricSpec(
        "imageremoval_references_untagged_total",
        "counter",
        "",
        ("namespace",),
        otel=METRIC_REFERENCES_UNTAGGED,
        meaning="names removed",
    ),
    MetricSpec(
        "imageremoval_reclaimed_bytes_total",
        "counter",
        "bytes",
        ("namespace",),
        otel=METRIC_BYTES_RECLAIMED,
        meaning="bytes of the image's blobs gone after garbage collection (measured just after the call)",
    ),
    MetricSpec(
        "imageremoval_conflicts_total",
        "counter",
        "",
        ("conflict", "forceable"),
        otel=METRIC_CONFLICTS,
        meaning="removals refused by a conflict",
    ),
    MetricSpec(
        "imageremoval_requests_rejected_total",
        "counter",
        "",
        ("rpc_method", "reason"),
        otel=METRIC_REJECTED,
        meaning="requests refused before any service saw them (MALFORMED_REQUEST, REQUEST_TOO_LARGE)",
    ),
    MetricSpec(
        "imageremoval_containerd_up",
        "gauge",
        "",
        (),
        otel=METRIC_CONTAINERD_UP,
        meaning="1 while containerd answers the health probe, 0 while it does not",
    ),
    MetricSpec(
        "imageremoval_build_info",
        "gauge",
        "",
        ("version", "python", "grpc"),
        otel=METRIC_BUILD_INFO,
        meaning="always 1; the labels say which build runs",
    ),
    MetricSpec(
        "rpc_server_call_duration_seconds",
        "histogram",
        "seconds",
        _SEMCONV_RPC,
        ("error_type",),
        otel=METRIC_RPC_DURATION,
        meaning="every inbound RPC except health and reflection (RPC semantic conventions)",
    ),
    MetricSpec(
        "rpc_server_duration_milliseconds",
        "histogram",
        "milliseconds",
        ("rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"),
        otel=METRIC_OLD_RPC_DURATION,
        exported="dup",
        meaning="the deprecated instrument, for dashboards being migrated (OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup)",
    ),
    MetricSpec(
        "imageremoval_reclaim_pending_bytes",
        "gauge",
        "bytes",
        ("namespace",),
        otel=METRIC_RECLAIM_PENDING,
        exported="later",
        meaning="bytes the last reclaim (ReclaimSpace or the loop) of the namespace planned and did not free",
    ),
    MetricSpec(
        "imageremoval_reclaim_last_success_timestamp_seconds",
        "gauge",
        "seconds",
        (),
        otel=METRIC_RECLAIM_LAST_SUCCESS,
        exported="later",
        meaning="Unix time of the last reclaim (ReclaimSpace or the loop) that reached its target",
    ),
    MetricSpec(
        "imageremoval_reclaim_targeted_bytes_total",
        "counter",
        "bytes",
        ("trigger",),
        otel=METRIC_RECLAIM_TARGETED,
        exported="on-use",
        meaning="bytes reclaims set out to free (trigger rpc or loop)",
    ),
    MetricSpec(
        "imageremoval_reclaim_freed_bytes_total",
        "counter",
        "bytes",
        ("trigger",),
        otel=METRIC_RECLAIM_FREED,
        exported="on-use",
        meaning="bytes reclaims freed, measured after collection",
    ),
    MetricSpec(
        "imageremoval_reclaim_images_total",
        "counter",
        "",
        ("trigger", "outcome", "reason"),
        otel=METRIC_RECLAIM_IMAGES,
        exported="on-use",
        meaning="images reclaims removed (outcome removed) or skipped (outcome skipped, reason the SkipReason)",
    ),
    MetricSpec(
        "imageremoval_reclaim_runs_total",
        "counter",
        "",
        ("trigger", "stop_reason"),
        otel=METRIC_RECLAIM_RUNS,
        exported="on-use",
        meaning="reclaim runs by why they stopped (target reached, nothing more may go, round limit)",
    ),
    MetricSpec(
        "imageremoval_reclaim_filesystem_usage_ratio",
        "gauge",
        "ratio",
        (),
        otel=METRIC_RECLAIM_FS_USAGE,
        exported="on-use",
        meaning="used fraction of containerd's root filesystem when a reclaim last measured it (statvfs)",
    ),
    MetricSpec(
        "imageremoval_usage_label_writes_total",
        "counter",
        "",
        ("source",),
        otel=METRIC_USAGE_WRITES,
        exported="on-use",
        meaning="usage label writes to image records (source event or sweep)",
    ),
    MetricSpec("target_info", "gauge", "", ("service_name", "service_version"), meaning="the OpenTelemetry resource"),
    # The Prometheus client's process and runtime collectors (Linux /proc), on the Prometheus endpoint only.
    MetricSpec("process_cpu_seconds_total", "counter", "seconds", (), meaning="user and system CPU time"),
    MetricSpec("process_resident_memory_bytes", "gauge", "bytes", (), meaning="resident set size"),
    MetricSpec("process_virtual_memory_bytes", "gauge", "bytes", (), meaning="virtual memory size"),
    MetricSpec("process_open_fds", "gauge", "", (), meaning="open file descriptors"),
    MetricSpec("process_max_fds", "gauge", "", (), meaning="the file-descriptor limit"),
    MetricSpec("process_start_time_seconds", "gauge", "seconds", (), meaning="start time, seconds since the epoch"),
    MetricSpec("python_info", "gauge", "", ("implementation", "major", "minor", "patchlevel", "version")),
    MetricSpec("python_gc_objects_collected_total", "counter", "", ("generation",), meaning="objects collected"),
    MetricSpec("python_gc_objects_uncollectable_total", "counter", "", ("generation",), meaning="uncollectable"),
    MetricSpec("python_gc_collections_total", "counter", "", ("generation",), meaning="collections per generation"),
)

# Log fields beyond time, level, logger and message: in JSON as keys, in text as key=value (empty ones left out).
LOG_TRACE_ID = "trace_id"
LOG_SPAN_ID = "span_id"
LOG_PEER = "peer"  # the caller's address (ipv4:127.0.0.1:50000, unix:...)
LOG_IDENTITY = "identity"  # the client certificate's identities, comma-separated (empty without mutual TLS)
LOG_REQUEST_ID = "request_id"  # RemoveImageRequest.request_id, when the caller set one
LOG_RPC_METHOD = "rpc_method"
LOG_FIELDS = (
    "namespace",
    "reference",
    "outcome",
    "reason",
    "image_id",
    "untagged",  # the names removed, comma-separated
    "deleted",  # the image IDs (and platform manifests) deleted, comma-separated
    "items",
    "duration_ms",
    LOG_RPC_METHOD,
    LOG_PEER,
    LOG_IDENTITY,
    LOG_REQUEST_ID,
    "containerdVersion",
    LOG_TRACE_ID,
    LOG_SPAN_ID,
)

# Events, published to containerd under our own topics, with containerd's own payload type.
TOPIC_UNTAG = "/imageremoval/untag"  # ImageUpdate.name: the name removed; labels[imageId]: the image it named
TOPIC_DELETE = "/imageremoval/delete"  # ImageDelete.name: the image ID (or platform manifest digest) deleted
EVENT_TYPE_URL = "containerd.services.images.v1.ImageDelete"  # /imageremoval/delete's payload
EVENT_UNTAG_TYPE_URL = "containerd.services.images.v1.ImageUpdate"  # /imageremoval/untag's payload
TOPIC_PROBE = "/imageremoval/usage-probe"  # empty; the usage tracker publishes it to see its subscription is open
EVENT_IMAGE_ID_LABEL = "imageId"  # the untag event's label holding the image ID the name pointed to
