"""The durable store on real SQLite and real PostgreSQL (a throwaway schema per test)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine.interfaces import CacheStats

from faithaudit.errors import ConflictError, InvalidRequestError
from faithaudit.store import MIGRATIONS_DIR, Store, hash_key, metadata
from faithaudit.store.schema import audit_events, audits, usage_events

PG_BASE = "postgresql+psycopg://{user}@127.0.0.1:5432/test"
LEASE = 30.0


def _pg_admin() -> sa.Engine | None:
    for user in ("postgres", "root"):
        engine = sa.create_engine(PG_BASE.format(user=user), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return engine
        except sa.exc.OperationalError:
            engine.dispose()
    return None


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine | None]:
    engine = _pg_admin()
    yield engine
    if engine is not None:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_url(request, tmp_path, pg_admin) -> Iterator[Callable[[], str]]:
    """A factory of URLs of empty databases of the parametrized kind."""
    schemas: list[str] = []

    def sqlite_url() -> str:
        return f"sqlite:///{tmp_path / uuid.uuid4().hex / 'nested' / 'faithaudit.db'}"

    def pg_url() -> str:
        schema = f"fa_test_{uuid.uuid4().hex[:12]}"
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        return pg_admin.url.set(query={"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    if request.param == "sqlite":
        yield sqlite_url
        return
    if pg_admin is None:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432/test")
    yield pg_url
    with pg_admin.connect() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def store(make_url) -> Iterator[Store]:
    s = Store(make_url())
    s.upgrade()
    yield s
    s.dispose()


def _create(store: Store, tenant: str = "acme", *, key: str | None = None, body: dict | None = None, **kw):
    body = body or {"query": "q", "n": uuid.uuid4().hex}
    return store.create_audit(tenant=tenant, request=body, request_hash=hash_key(str(body)), idempotency_key=key, **kw)


def _running(store: Store, worker: str = "w1", **kw):
    row, _ = _create(store, **kw)
    claim = store.claim(row.id, worker, lease_seconds=LEASE, max_attempts=3)
    assert claim.claimed
    return claim.audit


# -- schema --------------------------------------------------------------------------------------------------------


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def test_upgrade_is_idempotent_and_matches_the_models(store):
    store.upgrade()
    store.upgrade()
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [_head()]
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table")] == []
    assert store.ping()


def test_concurrent_upgrades_of_a_fresh_database(make_url):
    url = make_url()
    stores = [Store(url) for _ in range(2)]
    errors: list[Exception] = []
    barrier = threading.Barrier(2)

    def run(s: Store) -> None:
        barrier.wait()
        try:
            s.upgrade()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    row, created = _create(stores[0])
    assert created and stores[1].get_audit(row.id) == row
    for s in stores:
        s.dispose()


def test_ping_is_false_for_an_unreachable_database():
    s = Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert s.ping() is False
    s.dispose()


# -- API keys ------------------------------------------------------------------------------------------------------


def test_api_keys_create_authenticate_list_revoke(store):
    key, info = store.create_api_key("acme")
    other, _ = store.create_api_key("globex")
    assert key.startswith("fa_") and info.prefix == key[:10] and info.revoked_at is None
    assert info.created_at.tzinfo is not None
    assert store.authenticate(key) == "acme" and store.authenticate(other) == "globex"
    assert store.authenticate(key + "x") is None and store.authenticate("") is None
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT prefix, key_hash FROM api_keys")).all()
    assert all(key not in (p, h) for p, h in stored)
    assert hash_key(key) in {h for _, h in stored}
    assert [k.id for k in store.list_api_keys("acme")] == [info.id]
    assert len(store.list_api_keys()) == 2
    assert store.revoke_api_key(info.prefix) is True
    assert store.revoke_api_key(info.id) is False  # already revoked
    assert store.revoke_api_key("fa_nothing") is False
    assert store.authenticate(key) is None and store.authenticate(other) == "globex"
    assert store.list_api_keys("acme")[0].revoked_at is not None


# -- audits: the API side ------------------------------------------------------------------------------------------


def test_idempotency_key_replays_or_conflicts(store):
    body = {"query": "q"}
    first, created = _create(store, key="k1", body=body)
    again, created_again = _create(store, key="k1", body=body)
    assert created and not created_again and again == first
    with pytest.raises(ConflictError, match="different body"):
        _create(store, key="k1", body={"query": "other"})
    other_tenant, created_other = _create(store, "globex", key="k1", body=body)
    assert created_other and other_tenant.id != first.id
    no_key_a, _ = _create(store, body=body)
    no_key_b, _ = _create(store, body=body)
    assert no_key_a.id != no_key_b.id
    assert store.events(first.id) == [("queued", first.created_at)]


def test_new_audit_fields(store):
    row, _ = _create(store, body={"query": "q", "sources": [1, 2]})
    assert row.status == "queued" and row.request == {"query": "q", "sources": [1, 2]}
    assert row.report is None and row.gate_passed is None and row.attempts == 0 and row.progress_fraction == 0.0
    assert row.created_at.tzinfo == UTC and row.updated_at == row.created_at
    assert row.started_at is None and row.finished_at is None and len(row.id) == 32


def test_tenants_are_isolated(store):
    row, _ = _create(store, "acme")
    assert store.get_audit(row.id, tenant="globex") is None
    assert store.get_audit(row.id, tenant="acme") == row
    assert store.get_audit(row.id) == row
    assert store.list_audits("globex") == ([], None)
    assert store.delete_audit(row.id, tenant="globex") is False
    assert store.get_audit(row.id) is not None
    assert store.delete_audit(row.id, tenant="acme") is True
    assert store.get_audit(row.id) is None and store.events(row.id) == []
    assert store.delete_audit(row.id, tenant="acme") is False


def test_list_is_newest_first_with_a_cursor_and_filters(store):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [_create(store, now=t0 + timedelta(seconds=i // 2))[0] for i in range(7)]  # pairs share created_at
    _create(store, "globex")
    expected = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_audits("acme", limit=3, cursor=cursor)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert [r.id for r in seen] == [r.id for r in expected] and pages == 3
    assert store.list_audits("acme", limit=7)[1] is None

    done = _running(store, "w1")
    store.finish(done.id, "w1", report={"ok": True}, gate_passed=True)
    failed_gate = _running(store, "w2")
    store.finish(failed_gate.id, "w2", report={"ok": False}, gate_passed=False)
    assert [r.id for r in store.list_audits("acme", status="succeeded")[0]] == [failed_gate.id, done.id]
    assert [r.id for r in store.list_audits("acme", gate_passed=True)[0]] == [done.id]
    assert [r.id for r in store.list_audits("acme", gate_passed=False)[0]] == [failed_gate.id]
    assert len(store.list_audits("acme", status="queued", limit=100)[0]) == 7


@pytest.mark.parametrize("cursor", ["!!!", "bm90IGEgY3Vyc29y", "MjAyNi0wMS0wMXxhYmM"])
def test_a_malformed_cursor_is_a_422(store, cursor):
    with pytest.raises(InvalidRequestError) as info:
        store.list_audits("acme", cursor=cursor)
    assert info.value.fields[0].path == "cursor"


# -- audits: the worker side ---------------------------------------------------------------------------------------


def test_lease_life_cycle(store):
    row, _ = _create(store)
    claim = store.claim(row.id, "w1", lease_seconds=LEASE, max_attempts=3)
    assert claim.claimed and claim.reason == "claimed"
    assert claim.audit.status == "running" and claim.audit.attempts == 1 and claim.audit.started_at is not None

    other = store.claim(row.id, "w2", lease_seconds=LEASE, max_attempts=3)
    assert not other.claimed and other.reason == "leased" and other.audit.attempts == 1

    assert store.heartbeat(row.id, "w1", lease_seconds=LEASE, progress=0.5, stage="scoring")
    assert not store.heartbeat(row.id, "w2", lease_seconds=LEASE, progress=0.9)
    mid = store.get_audit(row.id)
    assert mid.progress_fraction == 0.5 and mid.progress_stage == "scoring"

    assert store.finish(row.id, "w1", report={"score": 1}, gate_passed=True)
    assert not store.finish(row.id, "w2", report={"score": 2}, gate_passed=False)
    assert not store.fail(row.id, "w1", error="late")
    done = store.get_audit(row.id)
    assert done.status == "succeeded" and done.report == {"score": 1} and done.gate_passed is True
    assert done.progress_fraction == 1.0 and done.finished_at >= done.started_at and done.error is None
    assert [s for s, _ in store.events(row.id)] == ["queued", "running", "succeeded"]
    assert store.claim(row.id, "w3", lease_seconds=LEASE, max_attempts=3).reason == "finished"
    assert not store.heartbeat(row.id, "w1", lease_seconds=LEASE)


def test_an_expired_lease_is_reaped_and_reclaimed(store):
    row = _running(store, "w1")
    store.mark_enqueued(row.id)
    later = datetime.now(UTC) + timedelta(seconds=LEASE + 5)
    assert store.reap(stale_enqueue_seconds=3600).ids == []
    assert store.reap(stale_enqueue_seconds=3600, now=later).ids == [row.id]
    assert store.get_audit(row.id).status == "queued"
    assert not store.heartbeat(row.id, "w1", lease_seconds=LEASE)  # the reaped worker learns it lost the audit

    claim = store.claim(row.id, "w2", lease_seconds=LEASE, max_attempts=3, now=later)
    assert claim.claimed and claim.audit.attempts == 2
    assert not store.finish(row.id, "w1", report={"by": "w1"}, gate_passed=None)
    assert store.finish(row.id, "w2", report={"by": "w2"}, gate_passed=None)
    assert store.get_audit(row.id).report == {"by": "w2"}
    statuses = [s for s, _ in store.events(row.id)]
    assert statuses == ["queued", "running", "requeued", "running", "succeeded"]
    assert statuses.count("succeeded") == 1


def test_claim_takes_over_an_expired_lease_without_the_reaper(store):
    row = _running(store, "w1")
    later = datetime.now(UTC) + timedelta(seconds=LEASE + 1)
    claim = store.claim(row.id, "w2", lease_seconds=LEASE, max_attempts=3, now=later)
    assert claim.claimed and claim.audit.attempts == 2
    assert not store.heartbeat(row.id, "w1", lease_seconds=LEASE)


def test_max_attempts_exhaustion_fails_the_audit(store):
    row, _ = _create(store)
    now = datetime.now(UTC)
    for attempt in range(2):
        now += timedelta(seconds=LEASE + 1)
        assert store.claim(row.id, f"w{attempt}", lease_seconds=LEASE, max_attempts=2, now=now).claimed
    now += timedelta(seconds=LEASE + 1)
    claim = store.claim(row.id, "w9", lease_seconds=LEASE, max_attempts=2, now=now)
    assert not claim.claimed and claim.reason == "exhausted"
    assert claim.audit.status == "failed" and claim.audit.finished_at is not None
    assert claim.audit.error == "gave up after 2 attempts (the worker died or lost its lease each time)"
    assert [s for s, _ in store.events(row.id)][-1] == "failed"
    assert store.claim(row.id, "w9", lease_seconds=LEASE, max_attempts=2, now=now).reason == "finished"


def test_worker_fail_and_missing_audits(store):
    row = _running(store, "w1")
    assert not store.fail(row.id, "w2", error="not mine")
    assert store.fail(row.id, "w1", error="boom")
    failed = store.get_audit(row.id)
    assert failed.status == "failed" and failed.error == "boom"
    missing = store.claim("0" * 32, "w1", lease_seconds=LEASE, max_attempts=3)
    assert missing == type(missing)(False, None, "not_found")


def test_heartbeat_after_delete_or_cancel_is_false(store):
    row = _running(store, "w1")
    assert store.delete_audit(row.id, tenant="acme")
    assert store.heartbeat(row.id, "w1", lease_seconds=LEASE) is False
    assert store.finish(row.id, "w1", report={}, gate_passed=None) is False

    other = _running(store, "w1")
    cancelled = store.cancel(other.id, tenant="acme")
    assert cancelled.status == "cancelled" and store.heartbeat(other.id, "w1", lease_seconds=LEASE) is False
    assert store.claim(other.id, "w2", lease_seconds=LEASE, max_attempts=3).reason == "finished"
    assert store.cancel(other.id, tenant="globex") is None


def test_reap_returns_queued_audits_never_or_long_ago_enqueued(store):
    never, _ = _create(store)
    fresh, _ = _create(store)
    store.mark_enqueued(fresh.id)
    old, _ = _create(store)
    store.mark_enqueued(old.id, now=datetime.now(UTC) - timedelta(minutes=10))
    # a never-enqueued audit gets a short grace period: the API enqueues it right after answering 202
    assert set(store.reap(stale_enqueue_seconds=60).ids) == {old.id}
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert set(store.reap(stale_enqueue_seconds=60, now=later).ids) == {never.id, old.id}
    store.mark_enqueued(never.id)
    store.mark_enqueued(old.id)
    assert store.reap(stale_enqueue_seconds=60).ids == []


def _race_claims(store: Store, audit_id: str, workers: tuple[str, ...]) -> list:
    barrier = threading.Barrier(len(workers))
    results: list = []

    def claim(worker: str) -> None:
        barrier.wait()
        results.append(store.claim(audit_id, worker, lease_seconds=LEASE, max_attempts=3))

    threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_claims_have_one_winner(store):
    for _ in range(3):
        row, _ = _create(store)
        results = _race_claims(store, row.id, ("a", "b"))
        assert sorted(c.claimed for c in results) == [False, True]
        assert {c.reason for c in results} == {"claimed", "leased"}
        assert store.get_audit(row.id).attempts == 1


def test_metrics(store):
    assert store.status_counts() == dict.fromkeys(["queued", "running", "succeeded", "failed", "cancelled"], 0)
    assert store.attempts_total() == 0 and store.finished_durations() == []
    _create(store)
    done = _running(store, "w1")
    store.finish(done.id, "w1", report={}, gate_passed=True)
    _running(store, "w2")
    counts = store.status_counts()
    assert counts["queued"] == 1 and counts["running"] == 1 and counts["succeeded"] == 1 and counts["failed"] == 0
    assert store.attempts_total() == 2
    durations = store.finished_durations()
    assert len(durations) == 1 and durations[0] >= 0


def test_from_settings_creates_the_data_dir(tmp_path):
    from faithaudit.config import Settings

    s = Store.from_settings(Settings(data_dir=tmp_path / "data" / "here"))
    s.upgrade()
    assert (tmp_path / "data" / "here" / "faithaudit.db").exists() and s.ping()
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.dispose()


def test_retention_deletes_finished_audits_and_jobs_past_their_age_and_keeps_active_ones(store):
    from faithaudit.store.reaper import reap_once

    class NoBroker:  # the broker is down: nothing is sent, retention still runs
        send = send_job = staticmethod(lambda _id, _queue=None: False)
        queue_depth = instance_id = staticmethod(lambda: None)

    long_ago = datetime.now(UTC) - timedelta(days=40)
    old_done = _running(store, "w1", now=long_ago)
    store.finish(old_done.id, "w1", report={"summary": "sensitive"}, gate_passed=True)
    old_queued, _ = _create(store, now=long_ago)  # a worker may still take it: kept
    recent = _running(store, "w2")
    store.finish(recent.id, "w2", report={}, gate_passed=True)
    old_job = store.create_job(tenant="acme", kind="gate", payload={"cases": []}, now=long_ago)
    store.claim_job(old_job.id, "w3", lease_seconds=LEASE, max_attempts=3)
    store.finish_job(old_job.id, "w3", result={"passed": True})
    queued_job = store.create_job(tenant="acme", kind="gate", payload={"cases": []}, now=long_ago)
    reap_once(store, NoBroker(), stale_enqueue_seconds=1e9, retention_days=30)
    assert store.get_audit(old_done.id) is None and store.events(old_done.id) == []
    assert store.get_audit(old_queued.id) is not None and store.get_audit(recent.id) is not None
    assert store.get_job(old_job.id) is None and store.get_job(queued_job.id) is not None
    assert store.purge_before(datetime.now(UTC) - timedelta(days=30)) == {"audits": 0, "jobs": 0}


def test_concurrent_submits_never_overshoot_a_quota(store):
    """Eight threads submit at once under a limit of three active audits: exactly three are admitted (the
    admitting transaction reads usage under a per-tenant lock on PostgreSQL; SQLite's writers are serial)."""
    from faithaudit.errors import QuotaExceededError
    from faithaudit.quotas import Quota, admit

    quota = Quota(max_active_audits=3)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def submit(i: int) -> None:
        barrier.wait()
        try:
            store.create_audit(
                tenant="acme", request={"n": i}, request_hash=str(i), idempotency_key=None, planned_tokens=10,
                admit=lambda usage: admit(quota, usage, planned_tokens=10, now=datetime.now(UTC)),
            )  # fmt: skip
            outcomes.append("admitted")
        except QuotaExceededError:
            outcomes.append("429")

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["429"] * 5 + ["admitted"] * 3
    assert store.usage("acme").active_audits == 3 and store.usage("globex").active_audits == 0


def test_a_job_lease_is_taken_once_under_racing_claims(store):
    job = store.create_job(tenant="acme", kind="gate", payload={"cases": []})
    barrier = threading.Barrier(4)
    reasons: list[str] = []

    def claim(worker: str) -> None:
        barrier.wait()
        reasons.append(store.claim_job(job.id, worker, lease_seconds=LEASE, max_attempts=3).reason)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(reasons) == ["claimed", "leased", "leased", "leased"]
    assert store.get_job(job.id).attempts == 1


def _sharded(store: Store, units: int = 2, *, lease: float = LEASE) -> str:
    row, _ = _create(store)
    assert store.claim(row.id, "coordinator", lease_seconds=lease, max_attempts=3).claimed
    units_ = [["u"]] * units
    assert store.begin_shards(row.id, "coordinator", units=units_, prepared={"response": "r"}, lease_seconds=lease)
    assert not store.heartbeat(row.id, "coordinator", lease_seconds=lease)  # the shards hold it now
    return row.id


def test_shards_are_leased_and_the_last_one_stored_assembles_once(store):
    audit_id = _sharded(store)
    a, b = (store.claim_shard(audit_id, i, f"w{i}", lease_seconds=LEASE, max_attempts=3) for i in (0, 1))
    assert a.claimed and b.claimed and a.shard.stages == ["u"]
    assert store.claim_shard(audit_id, 0, "w9", lease_seconds=LEASE, max_attempts=3).reason == "leased"
    assert store.heartbeat_shard(audit_id, 0, "w0", lease_seconds=LEASE)
    assert not store.heartbeat_shard(audit_id, 0, "w9", lease_seconds=LEASE)
    assert store.finish_shard(audit_id, 0, "w9", result=b"x", lease_seconds=LEASE) == "lost"
    assert store.finish_shard(audit_id, 0, "w0", result=b"zero", lease_seconds=LEASE) == "stored"
    assert store.claim_shard(audit_id, 0, "w9", lease_seconds=LEASE, max_attempts=3).reason == "finished"
    row = store.get_audit(audit_id)
    assert row.phase == "shards" and row.progress_stage == "shards 1/2" and row.prepared == {"response": "r"}
    assert store.finish_shard(audit_id, 1, "w1", result=b"one", lease_seconds=LEASE) == "assemble"
    row = store.get_audit(audit_id)
    assert row.phase == "assemble" and row.status == "running"
    assert store.heartbeat(audit_id, "w1", lease_seconds=LEASE)  # the last shard's worker holds the audit
    assert [(s.worker, s.result) for s in store.shards(audit_id)] == [("w0", b"zero"), ("w1", b"one")]
    assert store.finish(audit_id, "w1", report={"ok": 1}, gate_passed=True)
    assert store.delete_audit(audit_id, tenant="acme") and store.shards(audit_id) == []


def test_a_dead_shard_is_reaped_and_run_again_and_one_out_of_attempts_fails_the_audit(store):
    audit_id = _sharded(store, lease=0.01)
    assert store.reap_shards(stale_enqueue_seconds=60).to_send(resend_stale=True) == {}  # within the grace
    store.mark_shards_enqueued(audit_id, [0, 1])
    assert store.claim_shard(audit_id, 0, "dead", lease_seconds=0.01, max_attempts=2).claimed
    later = datetime.now(UTC) + timedelta(seconds=1)
    found = store.reap_shards(stale_enqueue_seconds=60, now=later)
    assert found.expired == [(audit_id, 0)] and found.queued == 2 and found.stale == []
    assert store.reap(stale_enqueue_seconds=60, now=later).expired == []  # its liveness is its shards'
    assert store.claim_shard(audit_id, 0, "dead again", lease_seconds=0.01, max_attempts=2).claimed
    found = store.reap_shards(stale_enqueue_seconds=0.5, now=later + timedelta(seconds=1))
    assert found.to_send(resend_stale=False) == {audit_id: [0]}
    assert found.to_send(resend_stale=True) == {audit_id: [0, 1]}  # shard 1: sent long ago, never claimed
    gave_up = store.claim_shard(audit_id, 0, "w", lease_seconds=LEASE, max_attempts=2)
    assert gave_up.reason == "exhausted"
    row = store.get_audit(audit_id)
    assert row.status == "failed" and row.error == "shard 0 (u) gave up after 2 attempts"
    assert store.claim_shard(audit_id, 1, "w", lease_seconds=LEASE, max_attempts=2).reason == "not_sharding"


def test_a_re_claimed_sharded_audit_resends_what_no_worker_holds_and_a_cancelled_one_stops_its_shards(store):
    audit_id = _sharded(store, units=3, lease=0.01)
    assert store.claim_shard(audit_id, 0, "w0", lease_seconds=LEASE, max_attempts=3).claimed
    assert store.finish_shard(audit_id, 0, "w0", result=b"0", lease_seconds=0.01) == "stored"
    assert store.claim_shard(audit_id, 1, "w1", lease_seconds=0.01, max_attempts=3).claimed
    time.sleep(0.05)  # w1 died, shard 2 still waits: a duplicate message claims the audit
    assert store.claim(audit_id, "again", lease_seconds=LEASE, max_attempts=3).claimed
    assert store.resume_shards(audit_id, "again", lease_seconds=LEASE) == ("shards", [1, 2])
    assert store.get_audit(audit_id).phase == "shards"
    assert not store.heartbeat_shard(audit_id, 1, "w1", lease_seconds=LEASE)
    assert store.claim_shard(audit_id, 1, "w2", lease_seconds=LEASE, max_attempts=3).claimed
    assert store.cancel(audit_id).status == "cancelled"
    assert not store.heartbeat_shard(audit_id, 1, "w2", lease_seconds=LEASE)
    assert store.finish_shard(audit_id, 1, "w2", result=b"1", lease_seconds=LEASE) == "lost"


def test_warm_opens_the_pool_and_a_burst_reuses_it(make_url):
    """``Store.warm`` (the API's start-up): PostgreSQL opens ``pool_size`` connections that stay in the pool, and
    that many concurrent reads afterwards open none; SQLite has nothing to open."""
    import threading

    store = Store(make_url(), pool_size=4)
    store.upgrade()
    try:
        if store.dialect == "sqlite":
            assert store.warm() == 0
            return
        assert store.warm() == 4
        with store.engine.connect() as conn:  # the warm-up's writes were rolled back
            assert [
                conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (audits, audit_events, usage_events)
            ] == [0, 0, 0]
        pool = store.engine.pool
        assert pool.checkedin() == 4
        compiled = []  # the submit's and the relay's statements were compiled by the warm-up, not by them
        sa.event.listen(store.engine, "after_cursor_execute", lambda *a: compiled.append(a[4].cache_hit))
        row, _ = store.create_audit(tenant="acme", request={}, request_hash="h", idempotency_key=None, planned_tokens=1)
        store.mark_enqueued_many([row.id])
        assert compiled == [CacheStats.CACHE_HIT] * 2
        opened = []
        sa.event.listen(store.engine, "connect", lambda *_: opened.append(1))
        barrier = threading.Barrier(4)

        def read() -> None:
            with store.engine.connect() as conn:
                barrier.wait(timeout=10)  # all four held at once
                conn.execute(sa.text("SELECT 1"))

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert opened == [] and pool.checkedin() == 4
    finally:
        store.dispose()


def test_an_idle_postgres_connection_is_pinged_and_a_dead_one_replaced(make_url, monkeypatch):
    """A connection back in use within ``IDLE_PING_SECONDS`` is not pinged (no round trip per transaction); one
    idle longer is pinged, and one the server has closed meanwhile is replaced: the store's read still answers."""
    from faithaudit.store import base

    store = Store(make_url(), pool_size=1)
    store.upgrade()
    try:
        if store.dialect == "sqlite":
            pytest.skip("the idle ping is PostgreSQL's pool")
        pings = []
        real_ping = store.engine.dialect.do_ping
        monkeypatch.setattr(store.engine.dialect, "do_ping", lambda c: pings.append(1) or real_ping(c))
        with store.engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with store.engine.connect() as conn:  # back at once: no ping
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pid
        assert pings == []
        monkeypatch.setattr(base, "IDLE_PING_SECONDS", 0.0)  # every connection counts as idle from now on
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pid
        assert pings == [1]
        killer = sa.create_engine(store.url, poolclass=sa.pool.NullPool)
        with killer.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        killer.dispose()
        assert store.get_audit("0" * 32) is None  # the dead connection failed its ping and was replaced
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        store.dispose()


def test_a_submit_without_quota_or_tags_stores_what_the_transaction_stores(store):
    """On PostgreSQL a submit with no quota to check and no tags is one statement (audit row, ``queued`` event and
    usage entry); it stores the same as the transaction a tagged submit takes, and a submit with no planned tokens
    adds no usage entry."""
    plain, _ = store.create_audit(
        tenant="acme", request={"query": "q"}, request_hash="h1", idempotency_key=None, planned_tokens=100
    )
    tagged, _ = store.create_audit(
        tenant="acme", request={"query": "q", "tags": ["t"]}, request_hash="h2", idempotency_key=None, planned_tokens=50
    )
    unplanned, _ = store.create_audit(tenant="acme", request={"query": "q"}, request_hash="h3", idempotency_key=None)
    assert store.usage("acme").planned_tokens == 150 and len(store.usage("acme").window) == 2
    for row in (plain, tagged, unplanned):
        assert store.events(row.id) == [("queued", row.created_at)]
        assert store.get_audit(row.id) == row
    fields = {k: v for k, v in vars(plain).items() if k not in ("id", "request", "created_at", "updated_at")}
    assert len(fields) > 10 and fields == {k: v for k, v in vars(tagged).items() if k in fields}
