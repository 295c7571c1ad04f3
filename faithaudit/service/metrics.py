"""Prometheus metrics read from the store at scrape time (the store is the system of record)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


class _StoreCollector:
    def __init__(self, store, enqueuer) -> None:
        self.store, self.enqueuer = store, enqueuer

    def collect(self):
        by_status = GaugeMetricFamily("faithaudit_audits", "Audits by status", labels=["status"])
        for status, count in sorted(self.store.status_counts().items()):
            by_status.add_metric([status], count)
        yield by_status

        durations = self.store.finished_durations()
        buckets, cumulative = [], 0
        for bound in DURATION_BUCKETS:
            cumulative = sum(1 for d in durations if d <= bound)
            buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        yield HistogramMetricFamily(
            "faithaudit_audit_duration_seconds",
            "Seconds from a worker's start to success (recent audits)",
            buckets=buckets,
            sum_value=float(sum(durations)),
        )
        depth = self.enqueuer.queue_depth()
        queued = self.store.status_counts().get("queued", 0)
        yield GaugeMetricFamily("faithaudit_queue_depth", "Messages waiting on the broker queue", value=depth or 0)
        yield GaugeMetricFamily("faithaudit_audits_waiting", "Audits stored as queued", value=queued)
        yield GaugeMetricFamily(
            "faithaudit_attempts_total", "Worker attempts over all audits", value=self.store.attempts_total()
        )


def render_metrics(store, enqueuer) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(store, enqueuer))
    return generate_latest(registry), CONTENT_TYPE_LATEST
