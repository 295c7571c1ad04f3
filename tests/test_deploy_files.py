"""The files under deploy/ (Prometheus scrape config, alert rules, the Grafana dashboard) name only metrics the
service exports, and the compose file wires them; Docker is not available here, so this is read, not run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from faithaudit import telemetry

ROOT = Path(__file__).resolve().parents[1]
STORE_GAUGES = {"faithaudit_audits", "faithaudit_queue_depth", "faithaudit_audits_waiting"}


def exported() -> set[str]:
    names = set(STORE_GAUGES)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    for metric in telemetry.REGISTRY.collect():  # families, whether or not a labelled child exists yet
        names |= {metric.name + suffix for suffix in suffixes[metric.type]}
    return names


def used(text: str) -> set[str]:
    return set(re.findall(r"\bfaithaudit_[a-z_]+\b", text)) - {"faithaudit_metrics_token"}


def test_alerts_and_dashboard_use_exported_metrics():
    alerts = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "faithaudit.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = set().union(*(used(e) for e in exprs))
    assert len(names) >= 8 and names <= exported(), names - exported()
    assert not {n for n in names if "tenant" in n}


def test_compose_runs_prometheus_and_grafana_with_the_token():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"prometheus", "grafana"} <= set(services)
    assert "--metrics-port" in services["worker"]["command"]
    assert compose["secrets"]["faithaudit_metrics_token"]["environment"] == "FAITHAUDIT_METRICS_TOKEN"
    env = compose["x-faithaudit-env"]
    assert env["FAITHAUDIT_ENVIRONMENT"] == "production" and "FAITHAUDIT_METRICS_TOKEN" in env
    assert {"FAITHAUDIT_CALLBACK_HOSTS", "FAITHAUDIT_CALLBACK_SECRET"} <= set(env)  # one webhook secret for all
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    api_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "faithaudit-api")
    assert api_job["authorization"]["credentials_file"].endswith("faithaudit_metrics_token")


def test_gpu_compose_routes_the_large_model_to_the_gpu_worker():
    """deploy/compose.gpu.yml: the routed model is served, its queue is the one worker-gpu takes, that worker runs
    on CUDA with a GPU reserved, and the routes pass the settings' own validation."""
    from faithaudit.config import Settings

    gpu = yaml.safe_load((ROOT / "deploy" / "compose.gpu.yml").read_text())
    routes = gpu["x-routes"]
    settings = Settings(
        served_models=routes["FAITHAUDIT_SERVED_MODELS"], model_queues=routes["FAITHAUDIT_MODEL_QUEUES"]
    )
    ((model, queue),) = settings.model_queues.items()
    assert model in settings.served_models and settings.queue_for(model) == queue != settings.queue_name
    worker = gpu["services"]["worker-gpu"]
    assert worker["command"][worker["command"].index("--queues") + 1] == queue
    assert worker["environment"]["FAITHAUDIT_DEVICE"] == "cuda"
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert worker["extends"]["service"] in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert all(gpu["services"][s]["environment"] == routes for s in ("api", "worker"))
    assert "TORCH_INDEX" in (ROOT / "Dockerfile").read_text()
