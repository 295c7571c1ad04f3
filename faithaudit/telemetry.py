"""The counters and histograms of what happens: audits submitted and finished, how long audits and their stages
take, worker attempts, gate results by suite. Imported by the API and the workers (no torch); the API renders
them at ``/metrics`` (``service.metrics``), a worker in its own container on ``--metrics-port``. In multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``) each process writes its own files and the API's ``/metrics`` sums them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)  # ours only, not the process/platform collectors

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
STAGE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, float("inf"))

SUBMITTED = Counter("faithaudit_audits_submitted", "Audits accepted by the API", registry=REGISTRY)
FINISHED = Counter(
    "faithaudit_audits_finished", "Audit runs ended by a worker, by outcome", ["outcome"], registry=REGISTRY
)
ATTEMPTS = Counter("faithaudit_worker_attempts", "Audit runs a worker started (claims)", registry=REGISTRY)
DURATION = Histogram(
    "faithaudit_audit_duration_seconds", "Seconds from a worker's claim to the stored report", buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)  # fmt: skip
STAGE_DURATION = Histogram(
    "faithaudit_stage_duration_seconds", "Seconds per audit stage (report.cost.by_stage)", ["stage"],
    buckets=STAGE_BUCKETS, registry=REGISTRY,
)  # fmt: skip
WEBHOOKS = Counter(
    "faithaudit_webhook_attempts", "Webhook POSTs by outcome (delivered: a 2xx)", ["outcome"], registry=REGISTRY
)
GATE_RESULTS = Counter(
    "faithaudit_gate_results", "Gate suites run by workers, by suite and result", ["suite", "result"], registry=REGISTRY
)


def audit_finished(outcome: str, *, seconds: float | None = None, stages: dict | None = None) -> None:
    FINISHED.labels(outcome=outcome).inc()
    if seconds is not None:
        DURATION.observe(seconds)
    for stage, cost in (stages or {}).items():
        STAGE_DURATION.labels(stage=stage).observe(cost.seconds)


def serve_worker_metrics(port: int) -> None:
    """A worker's own /metrics (its container has no API): this process's counters, or every process's files in
    multiprocess mode."""
    import os

    from prometheus_client import start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
