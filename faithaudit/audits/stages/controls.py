"""Controls that measure the audit's own error.

``placebos``: neutral, length-matched filler sources (``audits.placebos``) inserted one at a time at seeded
positions; each one's reliance is log p(resp | with it) - log p(resp | without it). Their spread is the noise
floor every real source is judged against. Each prompt reuses the full context's KV cache up to the insertion.
When answer flips will count (``stages.flips.answer_gate``), whether the greedy answer after each placebo keeps
the answer span is settled here, from that pass (``stages.flips.score_then_check``), for the placebos' flip rate.

``orders``: extra seeded permutations of the documents, each re-scoring the full context and leaving out each
source whose label an order could change, so that its reliance gets an interval over the orders (with the given
order's leave-one-out: ``Orders.reliance(given)``). A source whose reliance lies strictly between the label bounds
(``noise.order_sensitive``: between min(distracting, -floor) and the floor) is ``within_noise`` under any
orders: it is not re-scored (NaN in ``Orders.others``) and keeps reliance +- floor as its interval. The stage needs the
placebos' floor, so it runs once the shards are in. A trace keeps its causal order.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from faithaudit.audits import interventions
from faithaudit.audits.context import Findings, Orders, Placebos, StageContext
from faithaudit.audits.noise import NoiseFloor, order_sensitive, seeded_orders
from faithaudit.audits.placebos import placebo_prompts
from faithaudit.audits.plan import register_stage
from faithaudit.audits.scoring import logprobs, score_full_context, score_masks, score_pairs
from faithaudit.audits.stages.flips import answer_gate, score_then_check


@register_stage("placebos", passes=lambda o, n: o.placebos, order=25, selects=lambda o: o.placebos > 0)
def placebos(ctx: StageContext, found: Findings) -> Findings:
    opts = ctx.options
    items, prompts = placebo_prompts(ctx.layout, ctx.model, ctx.request.query, opts.placebos, seed=opts.seed)
    pairs = [(ids, ctx.response_ids) for ids in prompts]
    tick = ctx.progress.ticker("placebos")
    gate = answer_gate(ctx) if "answer_flip" in ctx.stages else None
    keeps = None
    if gate is not None and gate.margin_holds:  # answer flips will ask whether each placebo flips the answer
        each = partial(ctx.progress.step, "placebos", 2)  # the pass and the flip's planned regeneration
        scores, keeps = score_then_check(ctx.model, pairs, gate, reuse=ctx.base.cache, on_each=each)
    else:
        scores = score_pairs(ctx.model, pairs, base=ctx.base, on_each=tick)
    reliance = logprobs(scores) - ctx.base.score.logprob
    found_placebos = Placebos(
        texts=tuple(p.text for p in items),
        positions=tuple(p.position for p in items),
        prompts=tuple(prompts),
        noise=NoiseFloor.of(reliance),
        keeps_answer=None if keeps is None else tuple(keeps),
    )
    return replace(found, placebos=found_placebos)


def planned_order_passes(options, num_sources: int) -> int:
    """At most: the sources an order cannot move are known only once the floor is (``noise.order_sensitive``)."""
    return (options.orders - 1) * (num_sources + 1)


@register_stage(
    "orders",
    passes=planned_order_passes,
    order=27,
    selects=lambda o: o.orders > 1,
    needs_any=("leave_one_out",),
    needs_reordering=True,
    reads=("leave_one_out", "placebos"),
    shardable=False,
)
def orders(ctx: StageContext, found: Findings) -> Findings:
    layout, n = ctx.layout, ctx.num_sources
    ids = layout.document_ids
    floor = 0.0 if found.placebos is None else found.placebos.noise.floor
    rules = ctx.request.audit.labels
    sensitive = order_sensitive(found.reliance, floor, distracting=rules.distracting)
    masks = interventions.leave_one_out_masks(n)[sensitive]
    skipped = n - len(masks) if sensitive.any() else n + 1  # planned passes per order that are not run
    rows, full = [], []
    perms = [tuple(ids)]
    tick = ctx.progress.ticker("orders")
    for order in seeded_orders(len(ids), ctx.options.orders - 1, seed=ctx.options.seed):
        row, logprob = np.full(n, np.nan), np.nan
        if sensitive.any():
            permuted = layout.permuted(order)
            base = score_full_context(ctx.model, permuted, ctx.response_ids, with_attention=False)
            tick()
            loo = logprobs(score_masks(ctx.model, permuted, ctx.response_ids, masks, base=base, on_each=tick))
            row[sensitive], logprob = base.score.logprob - loo, base.score.logprob
        if skipped:
            ctx.progress.step("orders", skipped)  # the planned total stays honest
        rows.append(row)
        full.append(logprob)
        perms.append(tuple(ids[k] for k in order))
    others = np.vstack(rows) if rows else np.zeros((0, n))
    measured = Orders(permutations=tuple(perms), others=others, logprob_full_others=np.array(full))
    return replace(found, orders=measured)
