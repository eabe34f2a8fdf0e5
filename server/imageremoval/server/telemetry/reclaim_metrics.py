"""What reclaiming did, as metrics: bytes targeted and freed, images by outcome, runs, the usage acted on."""

from __future__ import annotations

import time

from opentelemetry.metrics import MeterProvider

from imageremoval.server.telemetry import metrics
from imageremoval.server.telemetry import names as t


class ReclaimMetrics:
    """Instruments for ReclaimSpace, the loop and the usage tracker; built once from the provider passed in."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = metrics.meter(provider)
        self._targeted = meter.create_counter(
            t.METRIC_RECLAIM_TARGETED, unit="By", description="Bytes reclaims set out to free"
        )
        self._freed = meter.create_counter(
            t.METRIC_RECLAIM_FREED, unit="By", description="Bytes reclaims freed, measured after collection"
        )
        self._images = meter.create_counter(
            t.METRIC_RECLAIM_IMAGES, unit="{image}", description="Images reclaims removed or skipped, by reason"
        )
        self._runs = meter.create_counter(
            t.METRIC_RECLAIM_RUNS, unit="{run}", description="Reclaim runs by why they stopped"
        )
        self._usage = meter.create_gauge(
            t.METRIC_RECLAIM_FS_USAGE, unit="1", description="Used fraction of containerd's root filesystem"
        )
        self._pending = meter.create_gauge(
            t.METRIC_RECLAIM_PENDING, unit="By", description="Bytes the last reclaim planned and did not free"
        )
        self._last_success = meter.create_gauge(
            t.METRIC_RECLAIM_LAST_SUCCESS, unit="s", description="Unix time of the last reclaim that reached its target"
        )
        self._writes = meter.create_counter(
            t.METRIC_USAGE_WRITES, unit="{write}", description="Usage label writes to image records"
        )

    def image(self, trigger: str, outcome: str, reason: str = "") -> None:
        self._images.add(
            1, {t.ATTR_METRIC_TRIGGER: trigger, t.ATTR_METRIC_OUTCOME: outcome, t.ATTR_METRIC_REASON: reason}
        )

    def run(
        self, trigger: str, namespace: str, *, targeted: int, planned: int, freed: int, stop: str, reached: bool
    ) -> None:
        labels = {t.ATTR_METRIC_TRIGGER: trigger}
        self._targeted.add(max(targeted, 0), labels)
        self._freed.add(freed, labels)
        self._runs.add(1, {**labels, t.ATTR_METRIC_STOP_REASON: stop})
        self._pending.set(max(planned - freed, 0), {t.ATTR_METRIC_NAMESPACE: namespace})
        if reached:
            self._last_success.set(time.time())

    def filesystem(self, fraction: float) -> None:
        self._usage.set(fraction)

    def label_write(self, source: str) -> None:
        self._writes.add(1, {t.ATTR_METRIC_SOURCE: source})
