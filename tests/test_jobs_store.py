"""Corpora and jobs in the store (SQLite): registration, claim once, finish, and the reaper's view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from faithaudit.errors import ConflictError
from faithaudit.store import Store
from faithaudit.store.reaper import reap_once


@pytest.fixture()
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'fa.db'}")
    s.upgrade()
    yield s
    s.dispose()


def test_corpora_are_per_tenant_and_unique(store):
    store.create_corpus("acme", "kb")
    with pytest.raises(ConflictError):
        store.create_corpus("acme", "kb")
    store.create_corpus("globex", "kb")
    assert store.get_corpus("acme", "kb").status == "pending"
    store.register_corpus("acme", "kb", num_documents=7)
    store.register_corpus("acme", "other", num_documents=2)  # `corpus add` of a corpus the store never saw
    assert [(c.name, c.status, c.num_documents) for c in store.list_corpora("acme")] == [
        ("kb", "ready", 7),
        ("other", "ready", 2),
    ]
    store.drop_corpus("acme", "other")
    assert store.get_corpus("acme", "other") is None and store.get_corpus("globex", "kb").num_documents == 0


def test_a_job_is_claimed_once_and_a_never_enqueued_one_is_reaped(store):
    job = store.create_job(
        tenant="acme", kind="gate", payload={"cases": []}, now=datetime.now(UTC) - timedelta(seconds=5)
    )
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert store.reap_jobs(stale_enqueue_seconds=300, now=datetime.now(UTC) - timedelta(seconds=4)) == []  # grace
    assert store.reap_jobs(stale_enqueue_seconds=300, now=later) == [job.id]
    sent: list[str] = []
    reap_once(store, lambda _: True, stale_enqueue_seconds=300, send_job=lambda j: sent.append(j) or True)
    assert sent == [job.id] and store.reap_jobs(stale_enqueue_seconds=300, now=later) == []
    claimed = store.claim_job(job.id, "w1", max_attempts=3)
    assert claimed.status == "running" and claimed.attempts == 1
    assert store.claim_job(job.id, "w2", max_attempts=3) is None
    store.finish_job(job.id, result={"passed": True})
    done = store.get_job(job.id, tenant="acme")
    assert done.status == "succeeded" and done.result == {"passed": True} and done.finished_at is not None
    assert store.get_job(job.id, tenant="globex") is None
