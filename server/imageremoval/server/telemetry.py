"""Span names and attribute keys in one place, so the removal, the tests and the docs agree on them."""

from __future__ import annotations

TRACER_NAME = "imageremoval"

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

# Metrics (OpenTelemetry names; the Prometheus endpoint shows them with units and _total, see README).
METER_NAME = "imageremoval"
METRIC_REMOVAL_DURATION = "imageremoval.removal.duration"  # histogram, s, {action, outcome}
METRIC_IMAGES_DELETED = "imageremoval.images.deleted"  # counter, {namespace}
METRIC_REFERENCES_UNTAGGED = "imageremoval.references.untagged"  # counter, {namespace}
METRIC_BYTES_RECLAIMED = "imageremoval.reclaimed"  # counter, By, {namespace}
METRIC_CONFLICTS = "imageremoval.conflicts"  # counter, {conflict, forceable}
METRIC_REMOVALS = "imageremoval.removals"  # counter, {action, outcome, reason}
METRIC_RPC_DURATION = "rpc.server.duration"  # histogram, ms, RPC semantic conventions

ATTR_METRIC_ACTION = "action"
ATTR_METRIC_OUTCOME = "outcome"
ATTR_METRIC_REASON = "reason"
ATTR_METRIC_CONFLICT = "conflict"
ATTR_METRIC_FORCEABLE = "forceable"
ATTR_METRIC_NAMESPACE = "namespace"

ACTION_DELETE = "delete"
ACTION_UNTAG = "untag"
ACTION_PRUNE = "prune"
OUTCOME_SUCCESS = "success"
OUTCOME_MISSING = "missing"
OUTCOME_CANCELLED = "cancelled"
