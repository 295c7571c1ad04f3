"""One audit over several workers: its shardable stages in units (``AuditPlan.units``), each unit on a worker.

    coordinator  prepare_audit (the response generated once, if it must be)  -> the units, stored and sent
    each unit    prepare_audit with that response -> run_unit -> UnitResult (the findings it wrote, its cost)
    assembly     prepare_audit -> merge the units' findings -> the assembled stages (``plan.assembled``) -> report
A unit runs its stages from the findings an audit starts with, exactly as they run in one process: a stage reads
only what the stages of its own unit wrote (``Stage.reads``), and the full-context pass it starts from is
recomputed from the same inputs, so the assembled report equals the single-worker one (``tests/test_shards.py``).
What it costs more: one full-context pass per unit and one for the assembly, counted in ``cost.by_stage``.

Results travel through the store as pickles of these dataclasses (numpy arrays inside): the store is the service's
own database, written only by its workers, never by an API client.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from faithaudit.api_schemas import Cost, MethodCost
from faithaudit.audits.context import Findings
from faithaudit.audits.meter import Meter, add_cost, cost_of
from faithaudit.audits.run import Prepared, run_stages


@dataclass(frozen=True)
class UnitResult:
    findings: dict[str, Any]  # the ``Findings`` fields its stages wrote
    cost: dict[str, MethodCost]  # per stage, as ``report.cost.by_stage`` counts it


def run_unit(prepared: Prepared, names: Sequence[str]) -> UnitResult:
    """Run the planned stages named ``names`` from the audit's starting findings; what they wrote and cost."""
    start = prepared.start()
    stages = [s for s in prepared.plan.stages if s.name in set(names)]
    if len(stages) != len(names) or any(not s.shardable for s in stages):
        raise ValueError(f"not a unit of this audit's plan: {list(names)}")
    meter = Meter(prepared.model)
    found = run_stages(prepared, stages, start, meter=meter)
    written = {
        f.name: getattr(found, f.name) for f in fields(Findings) if getattr(found, f.name) is not getattr(start, f.name)
    }
    return UnitResult(written, dict(meter.stages))


def merge(start: Findings, results: Iterable[UnitResult]) -> Findings:
    """The findings of every unit at once; two units writing one field is a plan error (their stages would
    share findings, so ``Stage.reads`` should have joined them)."""
    values: dict[str, Any] = {}
    for result in results:
        clash = values.keys() & result.findings.keys()
        if clash:
            raise ValueError(f"two units wrote {sorted(clash)}: declare the stages' reads")
        values.update(result.findings)
    return replace(start, **values)


def total_cost(parts: Iterable[dict[str, MethodCost]], *, workers: int) -> Cost:
    """The audit's cost summed over every worker's part, stage by stage."""
    stages: dict[str, MethodCost] = {}
    for part in parts:
        for name, cost in part.items():
            stages[name] = add_cost(stages.get(name, MethodCost()), cost)
    return cost_of(stages, workers=workers)


def encode(result: UnitResult) -> bytes:
    return pickle.dumps(result, protocol=5)


def decode(data: bytes) -> UnitResult:
    result = pickle.loads(data)  # noqa: S301 - written by this service's workers into its own store
    if not isinstance(result, UnitResult):
        raise TypeError(f"a stored shard result is a {type(result).__name__}, not a UnitResult")
    return result
