"""End to end with real processes: the API (uvicorn), Celery workers on Redis, SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cases import load_example
from service_harness import (
    ROOT,
    api_processes,
    create_key,
    free_port,
    postgres_schema,
    private_redis,
    service_env,
    start_api,
    start_redis,
    start_worker,
    stop_redis,
    wait_for,
)
from webhook_receiver import Receiver

SMALL = load_example("fictional_fact.json") | {
    "audit": {"num_ablations": 4, "answer_flip_top_k": 1, "placebos": 0, "orders": 1}
}
# An agent trace replayed by the worker: tool-output removal, an unavailable tool, policy replay with the registry.
AGENT = load_example("agent_case.json") | {
    "audit": {
        "methods": ["attention", "leave_one_out", "tool_unavailable", "policy_replay"],
        "answer_flip_top_k": 0,
        "replay_turns": 1,
        "placebos": 0,
    },
    "model": {"max_new_tokens": 16},
}
# Long enough (tens of seconds on 2 cores) to be killed half-way.
LONG = load_example("fictional_fact.json") | {
    "audit": {"num_ablations": 48, "answer_flip_top_k": 2, "placebos": 0, "orders": 1}
}


def _strip_timings(report: dict) -> dict:
    from faithaudit.api_schemas import AuditReport

    return AuditReport.model_validate(report).without_timings()


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory) -> dict:
    case = tmp_path_factory.mktemp("cli") / "case.json"
    case.write_text(json.dumps(SMALL))
    out = subprocess.run(
        [sys.executable, "-m", "faithaudit.cli", "audit", str(case), "--json", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return _strip_timings(json.loads(out.stdout))


@pytest.fixture()
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'fa.db'}"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_submit_poll_report_equals_cli(tmp_path, database, cli_report):
    with _database(tmp_path, database) as url:
        metrics_dir = tmp_path / "prom"  # one container's processes share their metric files
        metrics_dir.mkdir()
        env = service_env(
            tmp_path,
            database_url=url,
            broker_url="redis://127.0.0.1:6379/0",
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            FAITHAUDIT_CALLBACK_HOSTS="127.0.0.1",
            FAITHAUDIT_CALLBACK_RETRY_SECONDS="0.5",
        )
        key = create_key(env, "acme")
        api, base = start_api(env, tmp_path / "api.log")
        worker = start_worker(env, tmp_path / "worker.log")
        receiver = Receiver(fail_first=1).__enter__()  # the first delivery gets a 503: the worker retries
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
                audit_id = client.post("/v1/audits", json=SMALL).json()["id"]
                agent_id = client.post("/v1/audits", json=AGENT | {"callback_url": receiver.url}).json()["id"]
                done = wait_for(client, audit_id, lambda b: b["status"] in ("succeeded", "failed"), timeout=300)
                assert done["status"] == "succeeded", (done.get("error"), worker.tail())
                assert done["progress"]["fraction"] == 1.0 and done["attempts"] == 1
                assert _strip_timings(done["report"]) == cli_report
                page = httpx.get(done["report_url"], timeout=10)
                assert page.status_code == 200 and "Tarsquin" in page.text
                agent = wait_for(client, agent_id, lambda b: b["status"] in ("succeeded", "failed"), timeout=300)
                assert agent["status"] == "succeeded", (agent.get("error"), worker.tail())
                sources = {s["id"]: s for s in agent["report"]["sources"]}
                assert max(sources, key=lambda k: sources[k]["reliance"]) == "calculator#3"
                assert all(s["kind"] == "tool_output" and s["replay_without"] for s in sources.values())
                assert "Tool calls" in httpx.get(agent["report_url"], timeout=10).text
                secret = client.get("/v1/webhooks/secret").json()["secret"]
                _check_webhooks(receiver.wait(2, timeout=60), agent_id, worker, secret)
                # counters written where things happened (API: submitted; worker: finished, stage times)
                metrics = client.get("/metrics").text
                assert "faithaudit_audits_submitted_total 2.0" in metrics, metrics[:2000]
                assert 'faithaudit_audits_finished_total{outcome="succeeded"} 2.0' in metrics
                assert 'faithaudit_stage_duration_seconds_count{stage="leave_one_out"} 2.0' in metrics
                assert "faithaudit_audit_duration_seconds_count 2.0" in metrics
        finally:
            receiver.__exit__()
            worker.stop()
            api.stop()


def _check_webhooks(deliveries: list, audit_id: str, worker, secret: str) -> None:
    """Two POSTs (a 503, then the retry), each signed with the tenant's webhook key over exactly its body; the
    report-link secret does not verify them."""
    from faithaudit.webhooks import SIGNATURE_HEADER, verify_signature

    assert len(deliveries) == 2, (deliveries, worker.tail())
    for attempt, (path, headers, body) in enumerate(deliveries, start=1):
        assert path == "/hooks/faithaudit" and headers["X-Faithaudit-Attempt"] == str(attempt)
        assert verify_signature(secret, body, headers[SIGNATURE_HEADER])
        assert not verify_signature(secret, body + b" ", headers[SIGNATURE_HEADER])
        assert not verify_signature("test-secret", body, headers[SIGNATURE_HEADER])
        sent = json.loads(body)
        assert sent["audit_id"] == audit_id and sent["status"] == "succeeded" and sent["gate_passed"] is not None
        assert sent["summary"]["num_sources"] == 3


def test_killed_worker_audit_resumes_on_another_worker(tmp_path, sqlite_url):
    env = service_env(tmp_path, database_url=sqlite_url, broker_url="redis://127.0.0.1:6379/0")
    key = create_key(env, "acme")
    api, base = start_api(env, tmp_path / "api.log")
    first = start_worker(env, tmp_path / "worker1.log")
    second = None
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
            audit_id = client.post("/v1/audits", json=LONG).json()["id"]
            mid = wait_for(
                client, audit_id, lambda b: 0.05 < b["progress"]["fraction"] < 0.9, timeout=300, interval=0.2
            )
            assert mid["status"] == "running" and mid["attempts"] == 1
            first.kill_group()  # SIGKILL the worker's whole process group mid-audit
            second = start_worker(env, tmp_path / "worker2.log")
            done = wait_for(client, audit_id, lambda b: b["status"] in ("succeeded", "failed"), timeout=400)
            assert done["status"] == "succeeded", (done.get("error"), second.tail())
            assert done["attempts"] >= 2
        from faithaudit.store import Store

        store = Store(sqlite_url)
        statuses = [status for status, _ in store.events(audit_id)]
        assert statuses.count("succeeded") == 1, statuses
        assert "requeued" in statuses and statuses.count("running") >= 2, statuses
        store.dispose()
    finally:
        for proc in (first, second, api):
            if proc is not None:
                proc.stop()


def test_broker_down_at_submit_then_back(tmp_path, sqlite_url):
    port = free_port()
    with private_redis(port) as broker_url:
        env = service_env(tmp_path, database_url=sqlite_url, broker_url=broker_url)
        key = create_key(env, "acme")
        api, base = start_api(env, tmp_path / "api.log")
        worker = start_worker(env, tmp_path / "worker.log")
        redis = None
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                assert client.get("/readyz").status_code == 200
                subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False, timeout=10)
                time.sleep(0.5)
                assert client.get("/readyz").json()["checks"]["broker"] is False
                r = client.post("/v1/audits", json=SMALL)
                assert r.status_code == 202, r.text
                audit_id = r.json()["id"]
                assert client.get(f"/v1/audits/{audit_id}").json()["status"] == "queued"
                time.sleep(2)
                redis = start_redis(port)  # the broker is back
                done = wait_for(client, audit_id, lambda b: b["status"] in ("succeeded", "failed"), timeout=300)
                assert done["status"] == "succeeded", (done.get("error"), worker.tail())
        finally:
            worker.stop()
            api.stop()
            if redis is not None:
                stop_redis(port, redis)


class _database:
    def __init__(self, tmp_path, kind: str) -> None:
        self.tmp_path, self.kind = tmp_path, kind

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self._ctx = None
            return f"sqlite:///{self.tmp_path / 'fa.db'}"
        self._ctx = postgres_schema()
        return self._ctx.__enter__()

    def __exit__(self, *exc) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


def test_serve_with_two_api_processes_on_postgresql(tmp_path):
    """`serve --workers 2`: two torch-free API processes on one port and one PostgreSQL store (migrated once, by
    the parent); concurrent submits on fresh connections, reads, the list and an idempotent replay all answer."""
    with postgres_schema() as url:
        env = service_env(tmp_path, database_url=url, broker_url="redis://127.0.0.1:6379/0")
        key = create_key(env, "acme")
        api, base = start_api(env, tmp_path / "api.log", workers=2)
        try:
            children = api_processes(api)
            assert len(children) == 2, (children, api.tail())
            for pid in children:  # no torch library mapped in either API process
                assert "torch" not in Path(f"/proc/{pid}/maps").read_text(), pid
            headers = {"Authorization": f"Bearer {key}"}

            def submit(i: int, idempotency_key: str | None = None) -> httpx.Response:
                extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
                body = SMALL | {"query": f"{SMALL['query']} ({i})"}
                with httpx.Client(base_url=base, headers=headers | extra, timeout=30) as client:  # a new connection
                    return client.post("/v1/audits", json=body)

            with ThreadPoolExecutor(8) as pool:
                submitted = list(pool.map(submit, range(16)))
                replayed = list(pool.map(lambda _: submit(99, "same-key"), range(4)))
            assert [r.status_code for r in submitted + replayed] == [202] * 20, [r.text for r in submitted]
            assert len({r.json()["id"] for r in replayed}) == 1  # one audit, whichever process answered
            ids = {r.json()["id"] for r in submitted + replayed}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                for audit_id in ids:
                    assert client.get(f"/v1/audits/{audit_id}").json()["status"] == "queued"
                listed = client.get("/v1/audits", params={"limit": 50}).json()
                assert {a["id"] for a in listed["items"]} == ids, listed
                assert httpx.get(f"{base}/v1/audits", timeout=10).status_code == 401  # keys are still required
            assert api.popen.poll() is None and "Traceback" not in api.tail(100_000)
        finally:
            api.stop()
            _drop_queue(env)


def _drop_queue(env: dict[str, str]) -> None:
    """The Redis keys of the test's own queue (no worker took its messages)."""
    import redis

    queue = env["FAITHAUDIT_QUEUE_NAME"]
    client = redis.Redis.from_url(env["FAITHAUDIT_BROKER_URL"], socket_timeout=5)
    try:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    finally:
        client.close()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--workers", "0"), {}, "--workers"),
        (("--workers", "2"), {}, "--workers 2: several API processes need PostgreSQL"),  # SQLite
        (("--port", "70000"), {}, "--port"),
        (("--workers", "2"), {"FAITHAUDIT_REAPER_INTERVAL_SECONDS": "0"}, "FAITHAUDIT_REAPER_INTERVAL_SECONDS"),
    ],
)
def test_bad_serve_option_is_a_start_up_error(tmp_path, args, env, named):
    done = subprocess.run(
        [sys.executable, "-m", "faithaudit.cli", "serve", "--port", str(free_port()), *args],
        cwd=ROOT,
        env=service_env(tmp_path, database_url=f"sqlite:///{tmp_path / 'fa.db'}", broker_url="redis://x") | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert named in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
    assert not (tmp_path / "fa.db").exists()  # refused before the store was opened
