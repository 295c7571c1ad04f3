"""Trace one source through the network: corrupt it, then restore clean activations one site at a time.

Every pass is a ``Patcher.run`` over the fed suffix (the source onwards); what was measured comes back as log-probs
(``SourceTrace``), and ``readout`` turns them into fractions. The steps, in order:
    clean      record every site, the routers, and each head's attention to the source (attention probe)
    corrupted  the source's tokens swapped for a neutral placebo's (or noised embeddings)
    skip?      a gap under max(1 nat, noise floor) stops here
    span       per layer: restore the residual entering the layer at the source's positions
    mediation  per layer: restore the attention output, then the MLP output, at the source / after it
    checks     all attention outputs after the source restored (-> clean); an unchanged patched clean run
    heads      at the layers whose attention after the source recovers most: restore each head, and zero it
    routers    (MoE) routing without the source, and each chosen expert zeroed at the response positions
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faithaudit.audits.mechanism import readout
from faithaudit.audits.mechanism.budget import ROUTER_ABLATION_LAYERS
from faithaudit.audits.mechanism.patching import Edit, Patcher, Recording


@dataclass(frozen=True)
class Inputs:
    clean_ids: tuple[int, ...]  # the fed suffix: the source onwards, response included
    corrupted_ids: tuple[int, ...]  # the same with the source's tokens swapped (= clean_ids for noise)
    source_len: int  # the source is fed positions [0, source_len)
    prefix_len: int  # absolute position of fed position 0
    loo_ids: tuple[int, ...] | None = None  # the fed suffix without the source (routers; leave-one-out if unknown)
    loo_prefix_len: int | None = None  # the cached prefix that suffix follows (None: prefix_len)


@dataclass(frozen=True)
class RouterTrace:
    layers: list[int]  # the layers with a router, in order
    expert_share: list[list[float]]  # per layer: each expert's share of the top-k choices at the response positions
    expert_share_without: list[list[float]]  # the same without the source
    changed_share: list[float]  # per layer: response tokens whose chosen experts change without the source
    total_variation: list[float]  # per layer: mean TV distance of the router distributions
    expert_drops: list[tuple[int, int, float]]  # (layer, expert, nats dropped when zeroed at response positions)


@dataclass(frozen=True)
class SourceTrace:
    clean: float
    corrupted: float
    loo: float | None
    skipped_reason: str | None = None
    span: np.ndarray | None = None  # [layers] log p
    attention_at: np.ndarray | None = None
    mlp_at: np.ndarray | None = None
    attention_after: np.ndarray | None = None
    mlp_after: np.ndarray | None = None
    all_attention_after: float | None = None
    unchanged: float | None = None  # a clean run with every attention output "restored" to itself
    heads: tuple[tuple[int, int, float, float, float], ...] = ()  # (layer, head, restored lp, zeroed lp, attention)
    router: RouterTrace | None = None


def trace_source(
    patcher: Patcher,
    inputs: Inputs,
    *,
    head_layers: int,
    noise_floor: float | None,
    loo: float | None,
    min_gap: float = readout.MIN_GAP_NATS,
    span_only: bool = False,
) -> SourceTrace:
    """``span_only``: stop after the span trace (a cheaper second look, e.g. another corruption seed)."""
    rec = Recording()
    probe = _head_probe(patcher, inputs)
    clean = patcher.run(inputs.clean_ids, record=rec, probe=probe)
    corrupted = patcher.run(inputs.corrupted_ids, corrupted=True)
    router_loo = None
    if patcher.has_router and inputs.loo_ids is not None:
        router_loo = Recording()
        loo_measured = patcher.run(inputs.loo_ids, record=router_loo, prefix_len=inputs.loo_prefix_len)
        loo = loo if loo is not None else loo_measured
    elif loo is None and inputs.loo_ids is not None:
        loo = patcher.run(inputs.loo_ids, prefix_len=inputs.loo_prefix_len)
    reason = readout.skip_reason(clean, corrupted, noise_floor, min_gap=min_gap)
    if reason is not None:
        return SourceTrace(clean=clean, corrupted=corrupted, loo=loo, skipped_reason=reason)

    src = slice(0, inputs.source_len)

    def corrupted_run(edits: Sequence[Edit]) -> float:
        return patcher.run(inputs.corrupted_ids, edits, corrupted=True)

    def restore(site, layer: int, where: slice) -> Edit:
        return Edit(site, layer, where, rec.site(site)[layer][where])

    span = np.array([corrupted_run([restore("residual", k, src)]) for k in range(patcher.num_layers)])
    if span_only:
        return SourceTrace(clean=clean, corrupted=corrupted, loo=loo, span=span)
    mediation, all_after, unchanged = _mediation(patcher, inputs, restore, corrupted_run)
    att_after_frac = readout.recovered(mediation[("attention", "after")], clean, corrupted)
    heads = _heads(patcher, rec, probe, inputs, readout.head_layers(att_after_frac, head_layers), corrupted_run)
    router = _routers(patcher, rec, router_loo, inputs, clean) if router_loo is not None else None
    return SourceTrace(
        clean=clean,
        corrupted=corrupted,
        loo=loo,
        span=span,
        attention_at=mediation[("attention", "at")],
        mlp_at=mediation[("mlp", "at")],
        attention_after=mediation[("attention", "after")],
        mlp_after=mediation[("mlp", "after")],
        all_attention_after=all_after,
        unchanged=unchanged,
        heads=heads,
        router=router,
    )


def _mediation(patcher: Patcher, inputs: Inputs, restore, corrupted_run):
    """Per layer, attention and MLP outputs restored at the source and after it; then the two self-checks."""
    src, after = slice(0, inputs.source_len), slice(inputs.source_len, len(inputs.clean_ids))
    layers = range(patcher.num_layers)
    mediation = {
        (site, name): np.array([corrupted_run([restore(site, k, where)]) for k in layers])
        for site in ("attention", "mlp")
        for name, where in (("at", src), ("after", after))
    }
    all_after = corrupted_run([restore("attention", k, after) for k in layers])
    unchanged = patcher.run(inputs.clean_ids, [restore("attention", k, after) for k in layers])
    return mediation, all_after, unchanged


def _head_probe(patcher: Patcher, inputs: Inputs):
    from faithaudit.audits.provenance import AttentionProbe

    first = inputs.prefix_len + len(inputs.clean_ids) - patcher.response_len - 1
    return AttentionProbe(
        query_positions=(first, first + patcher.response_len - 1),
        spans=[(inputs.prefix_len, inputs.prefix_len + inputs.source_len)],
        num_layers=patcher.num_layers,
    )


def _heads(patcher: Patcher, rec: Recording, probe, inputs: Inputs, chosen: list[int], corrupted_run):
    after = slice(inputs.source_len, len(inputs.clean_ids))
    out = []
    width = patcher.head_dim
    for layer in chosen:
        attention = probe.per_head.get(layer)
        for head in range(patcher.num_heads):
            cols = rec.head[layer][after, head * width : (head + 1) * width]
            restored = corrupted_run([Edit("head", layer, after, cols, index=head)])
            zeroed = patcher.run(inputs.clean_ids, [Edit("head", layer, after, None, index=head)])
            share = float(attention[head, 0]) if attention is not None else float("nan")
            out.append((layer, head, restored, zeroed, share))
    return tuple(out)


def _routers(patcher: Patcher, rec: Recording, loo_rec: Recording, inputs: Inputs, clean: float) -> RouterTrace:
    """Routing at the response positions with and without the source; then each expert chosen there, zeroed."""
    n = patcher.response_len
    rows = slice(len(inputs.clean_ids) - n - 1, len(inputs.clean_ids) - 1)
    loo_rows = slice(len(inputs.loo_ids) - n - 1, len(inputs.loo_ids) - 1)
    layers = sorted(rec.router_choice)
    changed, tv, share, share_without = [], [], [], []
    for k in layers:
        clean_choice = rec.router_choice[k][rows].cpu().numpy()
        loo_choice = loo_rec.router_choice[k][loo_rows].cpu().numpy()
        experts = rec.router_logits[k].shape[-1]
        share.append(readout.expert_share(clean_choice, experts))
        share_without.append(readout.expert_share(loo_choice, experts))
        changed.append(readout.routing_change(clean_choice, loo_choice))
        clean_logits = rec.router_logits[k][rows].double().cpu().numpy()
        tv.append(readout.total_variation(clean_logits, loo_rec.router_logits[k][loo_rows].double().cpu().numpy()))
    drops = []
    ranked = sorted(range(len(layers)), key=lambda i: (-tv[i], i))[:ROUTER_ABLATION_LAYERS]
    for i in sorted(ranked):
        layer = layers[i]
        chosen = sorted({int(e) for e in rec.router_choice[layer][rows].flatten().tolist()})
        for expert in chosen:
            zeroed = patcher.run(inputs.clean_ids, [Edit("expert", layer, rows, None, index=expert)])
            drops.append((layer, expert, clean - zeroed))
    return RouterTrace(
        layers=layers,
        expert_share=share,
        expert_share_without=share_without,
        changed_share=changed,
        total_variation=tv,
        expert_drops=drops,
    )
