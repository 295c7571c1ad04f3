"""The report's ``mechanism`` section: a traced source's log-probs as recovered fractions, readout layers, heads,
routers and one sentence (``audits.mechanism.readout``)."""

from __future__ import annotations

from faithaudit.api_schemas.report import (
    ExpertAblation,
    MechanismHead,
    MechanismLayer,
    MechanismSource,
    RouterLayer,
    RouterReport,
)
from faithaudit.audits.context import Findings
from faithaudit.audits.mechanism import readout
from faithaudit.audits.prompt.layout import SourceLayout


def mechanism_report(layout: SourceLayout, found: Findings) -> list[MechanismSource] | None:
    if not found.mechanism:
        return None
    return [_source(layout.sources[f.source].id, f) for f in found.mechanism]


def mechanism_limitations(sections: list[MechanismSource] | None) -> list[str]:
    """One sentence per traced source whose self-checks failed: its figures are not to be read as they are."""
    out = []
    for section in sections or []:
        if section.self_check_failures:
            failed = "; ".join(section.self_check_failures)
            out.append(f"The mechanism trace of {section.source} failed its self-checks ({failed}).")
    return out


def _source(source_id: str, finding) -> MechanismSource:
    t = finding.trace
    common = {
        "source": source_id,
        "corruption": finding.corruption,
        "seed": finding.seed,
        "clean_logprob": _r(t.clean),
        "corrupted_logprob": _r(t.corrupted),
        "loo_logprob": None if t.loo is None else _r(t.loo),
        "forward_passes": finding.forward_passes,
    }
    if t.skipped_reason is not None:
        return MechanismSource(**common, skipped_reason=t.skipped_reason)

    def frac(values):
        return [_r(v) for v in readout.recovered(values, t.clean, t.corrupted)]

    span, att_at, mlp_at = frac(t.span), frac(t.attention_at), frac(t.mlp_at)
    att_after, mlp_after = frac(t.attention_after), frac(t.mlp_after)
    heads = _heads(t)
    share = readout.attention_share_of_effect(att_after, mlp_after)
    readout_at = readout.readout_layers(span)
    all_after = _r(float(readout.recovered(t.all_attention_after, t.clean, t.corrupted)))
    unchanged = _r(t.unchanged - t.clean)
    return MechanismSource(
        **common,
        layers=[
            MechanismLayer(
                layer=k,
                restore_source_residual=span[k],
                restore_attention_at_source=att_at[k],
                restore_mlp_at_source=mlp_at[k],
                restore_attention_after=att_after[k],
                restore_mlp_after=mlp_after[k],
            )
            for k in range(len(span))
        ],
        readout_layers=readout_at,
        attention_share_of_effect=None if share is None else _r(share),
        all_attention_after_restore=all_after,
        unchanged_run_delta_nats=unchanged,
        self_check_failures=readout.self_check_failures(span, all_after, t.unchanged - t.clean),
        heads=[MechanismHead(**vars(h)) for h in heads],
        causal_not_attending_heads=readout.causal_not_attending(heads),
        attending_not_causal_heads=readout.attending_not_causal(heads),
        head_thresholds={
            "causal_restore": readout.CAUSAL_RESTORE,
            "little_attention": readout.LITTLE_ATTENTION,
            "attending": readout.ATTENDING,
            "little_restore": readout.LITTLE_RESTORE,
        },
        router=_router(t.router),
        reading=readout.reading(source_id, readout_at, share, heads),
    )


def _heads(t) -> list[readout.HeadEffect]:
    return [
        readout.HeadEffect(
            layer=layer,
            head=head,
            restore=_r(float(readout.recovered(restored, t.clean, t.corrupted))),
            ablation_drop_nats=_r(t.clean - zeroed),
            attention_to_source=_r(attention),
        )
        for layer, head, restored, zeroed, attention in t.heads
    ]


def _router(router) -> RouterReport | None:
    if router is None:
        return None
    return RouterReport(
        layers=[
            RouterLayer(
                layer=layer,
                expert_share=router.expert_share[i],
                expert_share_without=router.expert_share_without[i],
                changed_share=_r(router.changed_share[i]),
                total_variation=_r(router.total_variation[i]),
            )
            for i, layer in enumerate(router.layers)
        ],
        expert_ablations=[
            ExpertAblation(layer=layer, expert=e, drop_nats=_r(d)) for layer, e, d in router.expert_drops
        ],
    )


def _r(x: float) -> float:
    return round(float(x), 6)
