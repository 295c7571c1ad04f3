"""Nothing lost, nothing stuck, with real processes: the API, Celery workers SIGKILLed mid-job, a private
redis-server flushed and restarted, leases of 3 seconds and a reaper every second.

- A corpus build and a gate run whose workers are SIGKILLed mid-job finish on the next worker, once.
- The same audit killed three times (``max_attempts=3``) fails clearly on the next claim.
- Messages lost by the broker (flushed; restarted empty) are sent again within about two leases, then finish.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime

import httpx
from cases import load_example
from service_harness import (
    create_key,
    free_port,
    private_redis,
    service_env,
    start_api,
    start_redis,
    start_worker,
    stop_redis,
    wait_for,
)

from faithaudit.store import Store

LEASE = 3.0
REAPER = 1.0
SMALL = load_example("fictional_fact.json") | {
    "audit": {"num_ablations": 4, "answer_flip_top_k": 0, "placebos": 0, "orders": 1}
}
DOCS = [
    {"id": f"d{i}", "text": f"Document {i}: the harbour of Velmora exports {i} tonnes of salt."} for i in range(300)
]


def _env(tmp_path, broker_url: str, **extra: str) -> dict[str, str]:
    return service_env(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'fa.db'}",
        broker_url=broker_url,
        FAITHAUDIT_LEASE_SECONDS=str(LEASE),
        FAITHAUDIT_REAPER_INTERVAL_SECONDS=str(REAPER),
        FAITHAUDIT_MAX_ATTEMPTS="3",
        FAITHAUDIT_TORCH_THREADS="1",  # two threads on a busy 2-core machine spin-wait each other into minutes
        **extra,
    )


def _wait_job(client: httpx.Client, path: str, predicate, *, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if predicate(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting on {path}; last: {body}")


def _ended(body: dict) -> bool:
    return body["status"] in ("succeeded", "failed", "cancelled")


def test_killed_corpus_and_gate_jobs_finish_on_the_next_worker(tmp_path):
    env = _env(tmp_path, "redis://127.0.0.1:6379/0")
    key = create_key(env, "acme")
    api, base = start_api(env, tmp_path / "api.log")
    workers = [start_worker(env, tmp_path / "worker1.log")]

    def kill_mid_job(path: str) -> None:
        _wait_job(client, path, lambda b: b["status"] == "running", timeout=90)
        workers[-1].kill_group()  # SIGKILL mid-job
        killed_at = time.monotonic()
        workers.append(start_worker(env, tmp_path / f"worker{len(workers) + 1}.log"))
        again = _wait_job(client, path, lambda b: b["attempts"] >= 2 or _ended(b), timeout=60)
        assert again["attempts"] == 2, again
        # re-claimed within the lease, a reaper sweep and the next worker's start-up
        assert time.monotonic() - killed_at < LEASE + REAPER + 30

    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            corpus_path = f"/v1/jobs/{client.post('/v1/corpora', json={'name': 'kb', 'documents': DOCS}).json()['id']}"
            kill_mid_job(corpus_path)
            built = _wait_job(client, corpus_path, _ended, timeout=120)
            assert built["status"] == "succeeded" and built["result"]["num_documents"] == len(DOCS), built
            info = client.get("/v1/corpora/kb").json()
            assert info["status"] == "ready" and info["num_documents"] == len(DOCS)  # the killed try left no half

            gate = client.post("/v1/gates", json={"name": "rel", "cases": [{"name": "small", "request": SMALL}]})
            assert gate.status_code == 202 and gate.json()["planned"]["forward_passes"] > 1, gate.text
            gate_path = f"/v1/gates/{gate.json()['id']}"
            kill_mid_job(gate_path)
            verdict = _wait_job(client, gate_path, _ended, timeout=180)
            assert verdict["status"] == "succeeded" and verdict["verdict"]["cases"], verdict
    finally:
        for proc in (*workers, api):
            proc.stop()


def test_an_audit_killed_three_times_fails_clearly(tmp_path):
    env = _env(tmp_path, "redis://127.0.0.1:6379/0")
    key = create_key(env, "acme")
    api, base = start_api(env, tmp_path / "api.log")
    workers = []
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            audit_id = client.post("/v1/audits", json=SMALL).json()["id"]
            for attempt in (1, 2, 3):
                workers.append(start_worker(env, tmp_path / f"worker{attempt}.log"))
                wait_for(
                    client,
                    audit_id,
                    lambda b, a=attempt: b["status"] == "running" and b["attempts"] == a,
                    timeout=90,
                    interval=0.1,
                )
                workers[-1].kill_group()
            workers.append(start_worker(env, tmp_path / "worker4.log"))
            done = wait_for(client, audit_id, _ended, timeout=60)
            assert done["status"] == "failed" and done["attempts"] == 3
            assert done["error"] == "gave up after 3 attempts (the worker died or lost its lease each time)"
        store = Store(env["FAITHAUDIT_DATABASE_URL"])
        statuses = [s for s, _ in store.events(audit_id)]
        store.dispose()
        assert statuses.count("running") == 3 and statuses[-1] == "failed" and "succeeded" not in statuses
    finally:
        for proc in (*workers, api):
            proc.stop()


def _resent_within(store: Store, ids: list[str], since: datetime, *, timeout: float) -> float:
    """Seconds from ``since`` until every audit in ``ids`` was enqueued again (or claimed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [store.get_audit(i) for i in ids]
        stamps = [_enqueued_at(store, r.id) for r in rows]
        if all(s is not None and s > since for s in stamps):
            return max((s - since).total_seconds() for s in stamps)
        time.sleep(0.1)
    raise AssertionError(f"not re-sent within {timeout} s")


def _enqueued_at(store: Store, audit_id: str):
    import sqlalchemy as sa

    from faithaudit.store.schema import audits

    with store.engine.connect() as conn:
        return conn.execute(sa.select(audits.c.enqueued_at).where(audits.c.id == audit_id)).scalar()


def test_lost_broker_messages_are_resent_within_two_leases(tmp_path):
    port = free_port()
    with private_redis(port) as broker_url:
        # 1. with the depth rule out of reach (re-send after 600 s), only the new run_id can bring them back
        env = _env(tmp_path, broker_url, FAITHAUDIT_REQUEUE_AFTER_SECONDS="600")
        key = create_key(env, "acme")
        api, base = start_api(env, tmp_path / "api1.log")
        store = Store(env["FAITHAUDIT_DATABASE_URL"])
        worker = redis = None
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                ids = [client.post("/v1/audits", json=SMALL).json()["id"] for _ in range(2)]
            time.sleep(1)  # enqueued; no worker runs, so the messages sit in Redis
            subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False, timeout=10)
            time.sleep(0.5)
            restarted = datetime.now(UTC)  # before it answers: the reaper may re-send before start_redis returns
            redis = start_redis(port)  # empty, with a new run_id
            by_restart = _resent_within(store, ids, restarted, timeout=LEASE + 3 * REAPER + 5)
            assert by_restart <= LEASE + REAPER + 1, by_restart
            api.stop()

            # 2. the messages vanish without a restart (same run_id): the queue holds fewer messages than there
            # are queued audits, so those unclaimed for two leases (the default) are sent again
            env = _env(tmp_path, broker_url)
            api, base = start_api(env, tmp_path / "api2.log")
            flushed = datetime.now(UTC)
            subprocess.run(["redis-cli", "-p", str(port), "flushall"], check=True, timeout=10)
            by_depth = _resent_within(store, ids, flushed, timeout=2 * LEASE + 3 * REAPER + 5)
            assert by_depth <= 2 * LEASE + 2 * REAPER + 1, by_depth

            worker = start_worker(env, tmp_path / "worker.log")
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                for audit_id in ids:
                    done = wait_for(client, audit_id, _ended, timeout=300)
                    assert done["status"] == "succeeded" and done["attempts"] == 1, (done, worker.tail())
            print(f"re-sent after: restart {by_restart:.1f} s, flush {by_depth:.1f} s (lease {LEASE} s)")
        finally:
            store.dispose()
            for proc in (worker, api):
                if proc is not None:
                    proc.stop()
            if redis is not None:
                stop_redis(port, redis)
