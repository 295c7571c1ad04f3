"""Per-model queues (FAITHAUDIT_MODEL_QUEUES): an audit of a routed model is stored with its queue and sent there,
on the real Redis broker; the reaper sends it again to the same queue; a worker started with ``--queues`` takes
it and nothing else does. Bad routes stop the command at start-up, naming the variable or the option."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cases import load_example
from inprocess import service_client
from service_harness import create_key, service_env, start_api, start_worker, wait_for
from test_batching import _cli

from faithaudit.config import Settings
from faithaudit.store.reaper import reap_once

SMALL = load_example("fictional_fact.json") | {
    "audit": {"methods": ["leave_one_out"], "answer_flip_top_k": 0, "placebos": 0, "orders": 1}
}
DEFAULT_MODEL = Settings().default_model


def _depth(enqueuer, queue: str) -> int:
    with enqueuer.app.connection_for_write() as conn:
        return int(conn.default_channel.client.llen(queue))


def test_routed_audit_is_stored_and_sent_to_its_queue_and_resent_there(tmp_path):
    routed = f"fa-test-model-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with service_client(url, model_queues={DEFAULT_MODEL: routed}) as (client, store):
        enqueuer = client.app.state.enqueuer
        headers = {"Authorization": f"Bearer {store.create_api_key('acme')[0]}"}
        audit_id = client.post("/v1/audits", json=SMALL, headers=headers).json()["id"]
        assert store.get_audit(audit_id).queue == routed
        assert client.app.state.relay.wait_idle()
        assert (_depth(enqueuer, routed), _depth(enqueuer, enqueuer.queue_name)) == (1, 0)
        assert enqueuer.queue_depth() == 1  # the reaper's depth counts the routed queue
        enqueuer.purge()  # the broker lost the message: the stale audit is sent again, to the same queue
        store.mark_enqueued(audit_id, now=datetime.now(UTC) - timedelta(minutes=10))
        assert reap_once(store, enqueuer, stale_enqueue_seconds=60) == [audit_id]
        assert (_depth(enqueuer, routed), _depth(enqueuer, enqueuer.queue_name)) == (1, 0)


def test_worker_on_the_model_queue_runs_the_routed_audit(tmp_path):
    routed = f"fa-test-model-{uuid.uuid4().hex[:8]}"
    env = service_env(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'fa.db'}",
        broker_url="redis://127.0.0.1:6379/0",
        FAITHAUDIT_MODEL_QUEUES=f"{DEFAULT_MODEL}={routed}",
    )
    key = create_key(env, "acme")
    api, base = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log", queues=routed)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
            audit_id = client.post("/v1/audits", json=SMALL).json()["id"]
            done = wait_for(client, audit_id, lambda b: b["status"] in ("succeeded", "failed"), timeout=300)
            assert done["status"] == "succeeded", (done.get("error"), worker.tail())
            assert f"{routed}" in worker.tail(100_000)  # the worker says which queues it takes
    finally:
        worker.stop()
        api.stop()


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"FAITHAUDIT_MODEL_QUEUES": "no-pairs-here"}, ("models",), "FAITHAUDIT_MODEL_QUEUES"),
        ({"FAITHAUDIT_MODEL_QUEUES": "/not/served=gpu"}, ("models",), "FAITHAUDIT_MODEL_QUEUES"),
        ({"FAITHAUDIT_MODEL_QUEUES": f"{DEFAULT_MODEL}=bad queue"}, ("models",), "FAITHAUDIT_MODEL_QUEUES"),
        ({}, ("worker", "--queues", "nobody-routes-here"), "--queues"),
    ],
)
def test_bad_route_is_a_start_up_error(env, args, named):
    done = _cli(*args, **env)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
