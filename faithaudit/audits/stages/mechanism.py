"""``mechanism`` (opt-in): for the top ``audit.mechanism_top_k`` sources by leave-one-out reliance (or the
``audit.mechanism_sources``), trace where the dependency flows through the network (``audits.mechanism``).

Every pass reuses the full context's KV cache up to the traced source and feeds the rest. The plan counts
``mechanism_max_passes`` per source (an upper bound the worker checks before any pass); progress ticks per pass and
jumps to the plan's count when a source is done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from faithaudit.audits.context import Findings, StageContext
from faithaudit.audits.plan import register_stage
from faithaudit.errors import FaithauditError


@dataclass(frozen=True)
class MechanismFinding:
    source: int
    corruption: str
    seed: int
    trace: object  # audits.mechanism.trace.SourceTrace
    forward_passes: int


def traced_sources(ctx: StageContext, found: Findings) -> list[int]:
    """The named sources, else the top k by leave-one-out reliance (ties: prompt order)."""
    options = ctx.options
    if options.mechanism_sources:
        ids = [s.id for s in ctx.layout.sources]
        return [ids.index(sid) for sid in options.mechanism_sources]
    if found.reliance is None:
        raise FaithauditError("mechanism needs leave_one_out reliance to pick its sources")
    order = np.argsort(-found.reliance, kind="stable")
    return [int(i) for i in order[: options.mechanism_top_k]]


@register_stage(
    "mechanism",
    passes=lambda o, n: o.mechanism_max_passes * (len(o.mechanism_sources) or min(o.mechanism_top_k, n)),
    order=80,
    shardable=False,  # traces the sources the merged findings rely on most
)
def mechanism(ctx: StageContext, found: Findings) -> Findings:
    from faithaudit.audits.mechanism.source import trace_in_context

    planned = ctx.options.mechanism_max_passes
    results = []
    for index in traced_sources(ctx, found):
        before = ctx.model.counter.forward_passes
        finding = trace_in_context(ctx, found, index, on_pass=ctx.progress.ticker("mechanism"))
        used = ctx.model.counter.forward_passes - before
        ctx.progress.step("mechanism", max(planned - used, 0))
        results.append(replace(finding, forward_passes=used))
    return replace(found, mechanism=tuple(results))
