"""Corpora, jobs and quotas in the store (SQLite): leases on jobs, corpora that fail and are deleted, the reaper's
decisions, and admission under quotas. Bookkeeping only; the live kill/restart tests are in test_reliability.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from faithaudit.errors import ConflictError, InvalidRequestError, NotFoundError, QuotaExceededError
from faithaudit.quotas import Quota, admit
from faithaudit.store import Store
from faithaudit.store.reaper import BrokerWatch, reap_once

LEASE = 3.0


@pytest.fixture()
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'fa.db'}")
    s.upgrade()
    yield s
    s.dispose()


class Broker:
    """Records what the reaper sends; ``depth`` is what the queue reports holding, ``run_id`` its instance."""

    def __init__(self, depth: int | None = 0, run_id: str | None = "r1") -> None:
        self.depth, self.run_id, self.sent, self.sent_jobs = depth, run_id, [], []

    def send(self, audit_id: str, queue: str | None = None) -> bool:
        self.sent.append(audit_id)
        return True

    def send_job(self, job_id: str) -> bool:
        self.sent_jobs.append(job_id)
        return True

    def queue_depth(self) -> int | None:
        return self.depth

    def instance_id(self) -> str | None:
        return self.run_id


def _audit(store, tenant="acme", tokens=None):
    row, _ = store.create_audit(
        tenant=tenant, request={"query": "q"}, request_hash="h", idempotency_key=None, planned_tokens=tokens
    )
    return row


def test_corpora_are_per_tenant_and_a_failed_one_is_rebuilt(store):
    job = store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    assert job.kind == "corpus_create" and job.subject == "kb" and job.payload["rebuild"] is False
    with pytest.raises(ConflictError, match="being built"):
        store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    store.create_corpus_job("globex", "kb", {"corpus": "kb", "documents": []})
    assert store.get_corpus("acme", "kb").status == "pending"
    assert store.claim_job(job.id, "w1", lease_seconds=LEASE, max_attempts=3).claimed
    assert store.fail_job(job.id, "w1", error="embedding failed")  # fails the corpus in the same transaction
    failed = store.get_corpus("acme", "kb")
    assert (failed.status, failed.error) == ("failed", "embedding failed")
    with pytest.raises(ConflictError, match="failed to build"):
        store.add_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    again = store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    assert again.payload["rebuild"] is True and store.get_corpus("acme", "kb").status == "pending"
    store.claim_job(again.id, "w1", lease_seconds=LEASE, max_attempts=3)
    assert store.register_corpus_for_job(again.id, "w2", num_documents=7, max_document_chars=80) == "lease_lost"
    assert store.register_corpus_for_job(again.id, "w1", num_documents=7, max_document_chars=80) == "registered"
    store.finish_job(again.id, "w1", result={})
    with pytest.raises(ConflictError, match="already exists"):
        store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    add = store.add_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    with pytest.raises(ConflictError, match="being extended"):  # one job per corpus at a time
        store.add_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    store.claim_job(add.id, "w1", lease_seconds=LEASE, max_attempts=3)
    assert store.register_corpus_for_job(add.id, "w1", num_documents=9, max_document_chars=20) == "registered"
    assert store.get_corpus("acme", "kb").max_document_chars == 80  # an add keeps the longest seen
    store.register_corpus("acme", "other", num_documents=2)  # the CLI's `corpus add` of a new corpus
    assert [(c.name, c.status, c.num_documents) for c in store.list_corpora("acme")] == [
        ("kb", "ready", 9),
        ("other", "ready", 2),
    ]


def test_deleting_a_corpus_frees_its_name_once_its_files_are_gone(store):
    build = store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    with pytest.raises(ConflictError, match="being built"):
        store.delete_corpus_job("acme", "kb")  # one job per corpus at a time
    store.claim_job(build.id, "w1", lease_seconds=LEASE, max_attempts=3)
    store.register_corpus_for_job(build.id, "w1", num_documents=1, max_document_chars=10)
    store.finish_job(build.id, "w1", result={})
    with pytest.raises(NotFoundError):
        store.delete_corpus_job("globex", "kb")  # another tenant's corpus is not found
    delete = store.delete_corpus_job("acme", "kb")
    assert delete.kind == "corpus_delete" and store.get_corpus("acme", "kb") is None
    with pytest.raises(ConflictError, match="being deleted"):
        store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    store.claim_job(delete.id, "w2", lease_seconds=LEASE, max_attempts=3)
    store.finish_job(delete.id, "w2", result={})
    assert store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []}).kind == "corpus_create"


def test_a_killed_workers_job_is_reaped_reclaimed_and_finished_once(store):
    job = store.create_job(tenant="acme", kind="gate", payload={"cases": []})
    store.mark_job_enqueued(job.id)
    first = store.claim_job(job.id, "w1", lease_seconds=LEASE, max_attempts=3)
    assert first.claimed and first.job.attempts == 1
    assert store.claim_job(job.id, "w2", lease_seconds=LEASE, max_attempts=3).reason == "leased"
    assert store.heartbeat_job(job.id, "w1", lease_seconds=LEASE)
    later = datetime.now(UTC) + timedelta(seconds=LEASE + 1)  # w1 was SIGKILLed: no more heartbeats
    assert store.reap_jobs(stale_enqueue_seconds=3600, now=later).expired == [job.id]
    assert store.get_job(job.id).status == "queued"
    second = store.claim_job(job.id, "w2", lease_seconds=LEASE, max_attempts=3, now=later)
    assert second.claimed and second.job.attempts == 2
    assert not store.heartbeat_job(job.id, "w1", lease_seconds=LEASE)
    assert not store.finish_job(job.id, "w1", result={"by": "w1"})  # the old holder cannot write
    assert store.finish_job(job.id, "w2", result={"by": "w2"})
    assert store.get_job(job.id).result == {"by": "w2"}
    assert store.claim_job(job.id, "w3", lease_seconds=LEASE, max_attempts=3).reason == "finished"


def test_a_redelivered_running_job_is_claimed_without_the_reaper_and_attempts_run_out(store):
    job = store.create_job(tenant="acme", kind="gate", payload={"cases": []})
    now = datetime.now(UTC)
    for worker in ("w1", "w2"):
        now += timedelta(seconds=LEASE + 1)
        assert store.claim_job(job.id, worker, lease_seconds=LEASE, max_attempts=2, now=now).claimed
    now += timedelta(seconds=LEASE + 1)
    out = store.claim_job(job.id, "w3", lease_seconds=LEASE, max_attempts=2, now=now)
    assert out.reason == "exhausted" and out.job.status == "failed"
    assert out.job.error == "gave up after 2 attempts (the worker died or lost its lease each time)"
    build = store.create_corpus_job("acme", "kb", {"corpus": "kb", "documents": []})
    for _ in range(2):
        now += timedelta(seconds=LEASE + 1)
        store.claim_job(build.id, "w1", lease_seconds=LEASE, max_attempts=2, now=now)
    now += timedelta(seconds=LEASE + 1)
    assert store.claim_job(build.id, "w1", lease_seconds=LEASE, max_attempts=2, now=now).reason == "exhausted"
    corpus = store.get_corpus("acme", "kb")  # failed in the claim's transaction: never pending without a job
    assert corpus.status == "failed" and corpus.error.startswith("gave up after 2 attempts")


def test_the_reaper_resends_stale_work_only_when_messages_were_lost(store):
    old = datetime.now(UTC) - timedelta(minutes=10)
    audits = [_audit(store) for _ in range(3)]
    for row in audits:
        store.mark_enqueued(row.id, now=old)
    job = store.create_job(tenant="acme", kind="gate", payload={"cases": []}, now=old)
    store.mark_job_enqueued(job.id)  # fresh: not stale
    backlog = Broker(depth=4)  # every queued item still has its message: a backlog, not a loss
    assert reap_once(store, backlog, stale_enqueue_seconds=60) == [] and backlog.sent_jobs == []
    emptied = Broker(depth=1)  # fewer messages than the 4 queued items: some were lost
    assert sorted(reap_once(store, emptied, stale_enqueue_seconds=60)) == sorted(r.id for r in audits)
    assert reap_once(store, Broker(depth=0), stale_enqueue_seconds=60) == []  # just re-sent: not stale again
    unknown = Broker(depth=None)  # depth unknown: send (a duplicate is harmless, a loss is not)
    assert len(reap_once(store, unknown, stale_enqueue_seconds=0)) == 3


def test_a_new_broker_instance_resends_every_queued_item_at_once(store):
    rows = [_audit(store) for _ in range(2)]
    for row in rows:
        store.mark_enqueued(row.id)  # sent a moment ago: not stale for two leases
    job = store.create_job(tenant="acme", kind="gate", payload={"cases": []})
    store.mark_job_enqueued(job.id)
    watch, broker = BrokerWatch(), Broker(depth=10, run_id="r1")
    assert reap_once(store, broker, stale_enqueue_seconds=60, watch=watch) == []
    broker.run_id = None  # the broker is down during a sweep: no judgement
    assert reap_once(store, broker, stale_enqueue_seconds=60, watch=watch) == []
    broker.run_id = "r2"  # it came back empty, with a new run_id
    assert sorted(reap_once(store, broker, stale_enqueue_seconds=60, watch=watch)) == sorted(r.id for r in rows)
    assert broker.sent_jobs == [job.id]
    assert reap_once(store, broker, stale_enqueue_seconds=60, watch=watch) == []
    # restarted again, but sending fails (still loading)
    broker.run_id, broker.send = "r3", lambda _id, _queue=None: False
    assert reap_once(store, broker, stale_enqueue_seconds=60, watch=watch) == []
    del broker.send  # sending works again: the restart was not forgotten
    assert sorted(reap_once(store, broker, stale_enqueue_seconds=60, watch=watch)) == sorted(r.id for r in rows)


def test_quotas_admit_refuse_with_retry_after_and_isolate_tenants(store):
    now = datetime.now(UTC)
    quota = Quota(max_active_audits=2, planned_tokens_per_hour=10_000)
    for tokens in (3_000, 4_000):
        store.create_audit(
            tenant="acme", request={}, request_hash="h", idempotency_key=None, planned_tokens=tokens,
            admit=lambda usage, t=tokens: admit(quota, usage, planned_tokens=t, now=now),
        )  # fmt: skip
    usage = store.usage("acme")
    assert (usage.active_audits, usage.planned_tokens, len(usage.window)) == (2, 7_000, 2)
    with pytest.raises(QuotaExceededError, match="2 audits and gate runs") as full:
        admit(quota, usage, planned_tokens=100, now=now)
    assert full.value.http_status == 429 and full.value.headers == {"Retry-After": "30"}
    roomy = Quota(max_active_audits=None, planned_tokens_per_hour=10_000)
    with pytest.raises(QuotaExceededError) as tokens:
        admit(roomy, usage, planned_tokens=5_000, now=now)  # fits once the 3,000 of the oldest leave the window
    assert 3590 <= tokens.value.retry_after <= 3601  # the oldest was stored just after `now`
    with pytest.raises(InvalidRequestError, match="more than this tenant may submit in an hour"):
        admit(roomy, usage, planned_tokens=20_000, now=now)  # could never fit: 422, not 429
    admit(roomy, store.usage("globex"), planned_tokens=9_000, now=now)  # another tenant's usage is its own
    assert store.usage("globex").active_audits == 0
