"""Prometheus metrics. Counters and histograms are updated where the events happen (``events``); gauges of what
the store holds now are read at scrape time (``_StoreCollector``). No series is labelled by tenant or tag: those
figures belong to the tenant-scoped API and UI.

Processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (one container: the API and its workers share a directory,
emptied before they start), the API's ``/metrics`` aggregates every process (prometheus_client's multiprocess
mode). Workers in other containers serve their own: ``faithaudit worker --metrics-port 9101``.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from faithaudit.telemetry import REGISTRY


class _StoreCollector:
    def __init__(self, store, enqueuer) -> None:
        self.store, self.enqueuer = store, enqueuer

    def collect(self):
        counts = self.store.status_counts()
        by_status = GaugeMetricFamily("faithaudit_audits", "Audits stored, by status (now)", labels=["status"])
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
        yield by_status
        depth = self.enqueuer.queue_depth()
        yield GaugeMetricFamily("faithaudit_queue_depth", "Messages waiting on the broker queue", value=depth or 0)
        yield GaugeMetricFamily("faithaudit_audits_waiting", "Audits stored as queued", value=counts.get("queued", 0))


def render_metrics(store, enqueuer) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(store, enqueuer))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(registry) + generate_latest(REGISTRY), CONTENT_TYPE_LATEST
