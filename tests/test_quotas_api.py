"""Quotas, planned cost and the corpus rules over HTTP (TestClient, real SQLite store, real Redis, no worker).

The planned cost is checked against the engine's own plan (``AuditPlan``) and against the tokens the real
tokenizer counts; a 429 carries Retry-After and the error envelope; usage is per tenant.
"""

from __future__ import annotations

import pytest
from cases import load_example
from inprocess import service_client

SMALL = load_example("fictional_fact.json") | {
    "audit": {"num_ablations": 4, "answer_flip_top_k": 0, "placebos": 0, "orders": 1}
}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def quota_api(tmp_path, model):  # `model`: the worker's model cache exists, so the real tokenizer counts
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with service_client(url, data_dir=tmp_path, quota_max_active_audits=3, quota_tokens_per_hour=20_000) as (
        client,
        store,
    ):
        keys = {t: store.create_api_key(t)[0] for t in ("acme", "globex")}
        yield client, store, keys


def test_submit_answers_the_planned_cost_from_the_engines_plan(quota_api, model):
    from faithaudit.api_schemas import AuditRequest
    from faithaudit.audits.plan import AuditPlan
    from faithaudit.audits.prompt.layout import request_layout

    client, store, keys = quota_api
    r = client.post("/v1/audits", json=SMALL, headers=auth(keys["acme"]))
    assert r.status_code == 202, r.text
    planned = r.json()["planned"]
    request = AuditRequest.model_validate(SMALL)
    layout, _, response_len = request_layout(request, model)  # the worker's own adapter and tokenizer
    plan = AuditPlan.build(request.audit, layout.num_sources, reorderable=layout.reorderable)
    assert planned["forward_passes"] == plan.total_passes
    assert planned["tokens"] == plan.total_passes * (len(layout.build().ids) + response_len)
    assert planned["tokens_method"] == "tokenizer"


def test_quotas_answer_429_with_retry_after_and_usage_is_per_tenant(quota_api):
    client, store, keys = quota_api
    ids = []
    for _ in range(3):
        r = client.post("/v1/audits", json=SMALL, headers=auth(keys["acme"]))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    full = client.post("/v1/audits", json=SMALL, headers=auth(keys["acme"]))
    assert full.status_code == 429 and full.headers["Retry-After"] == "30"
    assert (
        full.json()["error"]["code"] == "quota_exceeded"
        and "QUOTA_MAX_ACTIVE_AUDITS" in full.json()["error"]["message"]
    )
    assert client.post("/v1/audits", json=SMALL, headers=auth(keys["globex"])).status_code == 202  # its own quota

    usage = client.get("/v1/usage", headers=auth(keys["acme"])).json()
    assert usage["limits"] == {"max_active_audits": 3, "planned_tokens_per_hour": 20_000}
    assert usage["active_audits"] == 3 and usage["submitted_last_hour"] == 3
    assert usage["planned_tokens_last_hour"] == sum(store.usage("acme").window[i][1] for i in range(3))
    other = client.get("/v1/usage", headers=auth(keys["globex"])).json()
    assert other["active_audits"] == 1 and other["planned_tokens_last_hour"] * 3 == usage["planned_tokens_last_hour"]

    store.cancel(ids[0], tenant="acme")  # an ended audit frees its slot; its planned tokens still count
    assert client.delete(f"/v1/audits/{ids[1]}", headers=auth(keys["acme"])).status_code == 204  # so do deleted
    after = client.get("/v1/usage", headers=auth(keys["acme"])).json()
    assert after["active_audits"] == 1 and after["planned_tokens_last_hour"] == usage["planned_tokens_last_hour"]
    assert client.post("/v1/audits", json=SMALL, headers=auth(keys["acme"])).status_code == 202  # 4 x ~4,300 tokens
    big = SMALL | {"audit": SMALL["audit"] | {"placebos": 64, "orders": 8}}
    r = client.post("/v1/audits", json=big, headers=auth(keys["acme"]))
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "audit"  # can never fit an hour


def test_the_token_quota_is_429_until_the_window_moves(tmp_path, model):
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with service_client(url, data_dir=tmp_path, quota_tokens_per_hour=3_000) as (client, store):
        key = store.create_api_key("acme")[0]
        first = client.post("/v1/audits", json=SMALL, headers=auth(key))
        assert first.status_code == 202 and 1_500 < first.json()["planned"]["tokens"] <= 3_000  # two do not fit
        second = client.post("/v1/audits", json=SMALL, headers=auth(key))
        assert second.status_code == 429, second.text
        assert 3500 <= int(second.headers["Retry-After"]) <= 3601
        assert "FAITHAUDIT_QUOTA_TOKENS_PER_HOUR" in second.json()["error"]["message"]
        replay = client.post("/v1/audits", json=SMALL, headers=auth(key) | {"Idempotency-Key": "k1"})
        assert replay.status_code == 429  # a new key is a new audit: counted


def test_corpus_rules_pending_failed_and_deleted(quota_api):
    client, store, keys = quota_api
    docs = {"name": "kb", "documents": [{"text": "The sky is green on Zog."}]}
    created = client.post("/v1/corpora", json=docs, headers=auth(keys["acme"]))
    assert created.status_code == 202
    again = client.post("/v1/corpora", json=docs, headers=auth(keys["acme"]))
    assert again.status_code == 409 and "being built" in again.json()["error"]["message"]
    add = client.post("/v1/corpora/kb/documents", json={"documents": docs["documents"]}, headers=auth(keys["acme"]))
    assert add.status_code == 409 and "being built" in add.json()["error"]["message"]
    retriever = {"query": "What colour is the sky on Zog?", "pipeline": {"kind": "retriever", "corpus": "kb", "k": 1}}
    pending = client.post("/v1/audits", json=retriever, headers=auth(keys["acme"]))
    assert pending.status_code == 409 and "pipeline.corpus" in pending.json()["error"]["message"]
    deleting = client.delete("/v1/corpora/kb", headers=auth(keys["acme"]))
    assert deleting.status_code == 409  # its build job is queued: one job per corpus at a time

    job_id = created.json()["id"]  # the worker's build fails for good: the corpus says why
    store.claim_job(job_id, "w1", lease_seconds=3, max_attempts=3)
    store.fail_job(job_id, "w1", error="embedding model missing")
    info = client.get("/v1/corpora/kb", headers=auth(keys["acme"])).json()
    assert info["status"] == "failed" and info["error"] == "embedding model missing"
    failed = client.post("/v1/audits", json=retriever, headers=auth(keys["acme"]))
    assert failed.status_code == 422 and failed.json()["error"]["fields"][0]["path"] == "pipeline.corpus"

    assert client.delete("/v1/corpora/kb", headers=auth(keys["globex"])).status_code == 404  # not its corpus
    gone = client.delete("/v1/corpora/kb", headers=auth(keys["acme"]))
    assert gone.status_code == 202 and gone.json()["kind"] == "corpus_delete"
    assert client.get("/v1/corpora/kb", headers=auth(keys["acme"])).status_code == 404
    blocked = client.post("/v1/corpora", json=docs, headers=auth(keys["acme"]))
    assert blocked.status_code == 409 and "being deleted" in blocked.json()["error"]["message"]
    assert client.delete("/v1/corpora/..", headers=auth(keys["acme"])).status_code == 404
