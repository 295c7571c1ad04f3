"""One audit over several workers (``audits.shards``): the units a plan splits into, and the report assembled
from units each scored by a fresh preparation (as another worker would) equal to the single-worker report: labels,
ranks and flags exactly, every float within 1e-5, on the real model."""

from __future__ import annotations

import json

import pytest
from cases import GOLDEN_CASES, golden_request, load_example
from test_golden_reports import differences

from faithaudit.api_schemas import AuditOptions
from faithaudit.audits import shards
from faithaudit.audits.plan import AuditPlan
from faithaudit.audits.run import prepare_audit, report_of, run_stages
from faithaudit.tools import registry_for

FLOATS = 1e-5


def test_units_join_the_stages_that_read_each_other():
    plan = AuditPlan.build(AuditOptions(), 4)
    assert plan.units == (
        ("attention_baseline",),
        ("leave_one_out", "no_context", "context_ablation"),
        ("placebos",),
    )  # orders re-score what the floor and leave-one-out leave open: once they are in
    assert [s.name for s in plan.assembled] == ["attention", "orders", "answer_flip"]
    agent = AuditPlan.build(
        AuditOptions(methods=["leave_one_out", "tool_unavailable", "policy_replay"]), 3, reorderable=False
    )
    assert agent.units == (("leave_one_out", "policy_replay"), ("placebos",), ("tool_unavailable",))


def sharded(request, model):
    """The audit as the shard workers run it: the response settled once, each unit from a fresh preparation,
    the assembly from another."""
    first = prepare_audit(request, model, tools=registry_for)
    settled = (first.response, first.origin)
    parts = [first.meter.stages]
    results = []
    for unit in first.plan.units:
        prepared = prepare_audit(request, model, tools=registry_for, response=settled)
        result = shards.decode(shards.encode(shards.run_unit(prepared, unit)))  # through the store's bytes
        parts += [prepared.meter.stages, result.cost]
        results.append(result)
    final = prepare_audit(request, model, tools=registry_for, response=settled)
    found = run_stages(final, final.plan.assembled, shards.merge(final.start(), results))
    parts.append(final.meter.stages)
    return report_of(final, found, cost=shards.total_cost(parts, workers=len(results) + 1)), len(results)


@pytest.mark.parametrize("name", ["rag", "agent"])
def test_sharded_report_equals_the_single_worker_report(name, model, golden_reports):
    single = golden_reports[name].model_dump(mode="json")
    report, units = sharded(golden_request(name), model)
    actual = report.model_dump(mode="json")
    assert units >= 2
    assert [s["label"] for s in actual["sources"]] == [s["label"] for s in single["sources"]]
    assert actual["summary"]["flags"] == single["summary"]["flags"]
    cost, single_cost = actual.pop("cost"), single.pop("cost")
    assert differences(single, actual, tolerance=FLOATS) == [], json.dumps(actual["summary"])[:2000]
    assert cost["workers"] == units + 1 and single_cost["workers"] == 1
    by_stage = {k: v["forward_passes"] for k, v in cost["by_stage"].items()}
    single_by_stage = {k: v["forward_passes"] for k, v in single_cost["by_stage"].items()}
    assert by_stage.pop("full_context") == units + 2  # the coordinator, each unit, the assembly
    assert by_stage == {k: v for k, v in single_by_stage.items() if k != "full_context"}


def test_two_workers_one_killed_mid_shard_store_the_single_worker_report_once(tmp_path, golden_reports):
    """Real API, two real Celery workers, FAITHAUDIT_SHARD_PASSES=1: the golden RAG audit goes out as shards; the
    worker holding the first running shard is SIGKILLed; its shard is reaped and run again by the other."""
    import httpx
    from service_harness import create_key, service_env, start_api, start_worker, wait_for

    from faithaudit.store import Store

    url = f"sqlite:///{tmp_path / 'fa.db'}"
    env = service_env(tmp_path, database_url=url, broker_url="redis://127.0.0.1:6379/0", FAITHAUDIT_SHARD_PASSES="1")
    key = create_key(env, "acme")
    api, base = start_api(env, tmp_path / "api.log")
    workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
    store = Store(url)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
            body = load_example(GOLDEN_CASES["rag"])
            body["audit"] = {**body.get("audit", {}), "num_ablations": 8}  # as ``cases.golden_request``
            audit_id = client.post("/v1/audits", json=body).json()["id"]
            killed, shard = _kill_a_shard_worker(store, audit_id, workers)
            done = wait_for(client, audit_id, lambda b: b["status"] in ("succeeded", "failed"), timeout=400)
            assert done["status"] == "succeeded", (done.get("error"), *(w.tail() for w in workers))
        shards = store.shards(audit_id)
        assert [s.status for s in shards] == ["succeeded"] * len(shards) and len(shards) >= 2
        assert shards[shard].attempts >= 2 and killed not in {s.worker for s in shards if s.idx == shard}
        events = store.events(audit_id)
        assert [s for s, _ in events].count("succeeded") == 1 and [s for s, _ in events].count("sharded") == 1
        single = golden_reports["rag"].model_dump(mode="json")
        report = done["report"]
        assert [s["label"] for s in report["sources"]] == [s["label"] for s in single["sources"]]
        assert report["summary"]["flags"] == single["summary"]["flags"]
        cost = report.pop("cost")
        single.pop("cost")
        assert differences(single, report, tolerance=FLOATS) == []
        assembler = _assembler(url, audit_id)
        assert cost["workers"] == len({s.worker for s in shards} | {assembler})
    finally:
        store.dispose()
        for proc in (*workers, api):
            proc.stop()


def _kill_a_shard_worker(store, audit_id: str, workers) -> tuple[str, int]:
    """SIGKILL the worker that holds the first shard seen running; (its worker id, the shard)."""
    import time

    import sqlalchemy as sa

    from faithaudit.store.schema import audit_shards

    pids = {w.popen.pid: w for w in workers}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            running = conn.execute(
                sa.select(audit_shards.c.idx, audit_shards.c.lease_owner).where(
                    audit_shards.c.audit_id == audit_id, audit_shards.c.status == "running"
                )
            ).first()
        if running is not None:
            owner = running.lease_owner
            pids[int(owner.split(":")[1])].kill_group()
            return owner, running.idx
        time.sleep(0.1)
    raise AssertionError("no shard ran")


def _assembler(url: str, audit_id: str) -> str:
    """The worker that stored the report (the detail of the audit's succeeded event)."""
    import sqlalchemy as sa

    from faithaudit.store.schema import audit_events

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        query = sa.select(audit_events.c.detail).where(
            audit_events.c.audit_id == audit_id, audit_events.c.status == "succeeded"
        )
        detail = conn.execute(query).scalar_one()
    engine.dispose()
    return detail
