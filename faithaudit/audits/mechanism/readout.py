"""Pure functions from a traced source's log-probs to what the report says: recovered fractions, readout layers,
the attention share of the effect, causal and attending heads, routing changes, and one sentence. No torch.

A recovered fraction is (patched - corrupted) / (clean - corrupted) log p(response): 1 when the restored activation
brings the clean answer back, 0 when it does nothing. It is only computed when the gap is at least
``max(MIN_GAP_NATS, noise floor)``; below that the source is skipped rather than divided by noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_GAP_NATS = 1.0
READOUT_THRESHOLDS = (0.5, 0.1)  # the span trace falls below these: the answer leaves the source
CAUSAL_RESTORE = 0.1  # a head whose patch recovers at least this share of the effect is causal
ATTENDING = 0.1  # a head giving the source at least this share of its attention attends to it
LITTLE_RESTORE = 0.02  # an attending head recovering under this is "not causal"
LITTLE_ATTENTION = 0.05  # a causal head giving the source under this is "not attending"


def skip_reason(
    clean: float, corrupted: float, noise_floor: float | None, *, min_gap: float = MIN_GAP_NATS
) -> str | None:
    gap = clean - corrupted
    needed = max(min_gap, noise_floor or 0.0)
    if gap < needed or gap <= 0:
        return (
            f"corrupting the source moves log p(response) by {gap:.2f} nats, under max({min_gap:g} nat, the "
            f"noise floor) = {needed:.2f}: fractions would divide by noise"
        )
    return None


def recovered(patched: np.ndarray | float, clean: float, corrupted: float) -> np.ndarray:
    return (np.asarray(patched, dtype=np.float64) - corrupted) / (clean - corrupted)


def readout_layers(span: Sequence[float]) -> list[int | None]:
    """[the first layer where the span trace falls below 0.5, the first where it falls below 0.1]."""
    out: list[int | None] = []
    for threshold in READOUT_THRESHOLDS:
        below = [k for k, v in enumerate(span) if v < threshold]
        out.append(below[0] if below else None)
    return out


def attention_share_of_effect(attention_after: Sequence[float], mlp_after: Sequence[float]) -> float | None:
    """The attention part of the summed single-layer recoveries after the source (negative ones count as 0)."""
    att = float(np.clip(np.asarray(attention_after, dtype=np.float64), 0, None).sum())
    mlp = float(np.clip(np.asarray(mlp_after, dtype=np.float64), 0, None).sum())
    return None if att + mlp <= 0 else att / (att + mlp)


def head_layers(attention_after: Sequence[float], count: int) -> list[int]:
    """The ``count`` layers whose attention output after the source recovers most (ascending layer order)."""
    ranked = np.argsort(-np.asarray(attention_after, dtype=np.float64), kind="stable")[:count]
    return sorted(int(k) for k in ranked)


@dataclass(frozen=True)
class HeadEffect:
    layer: int
    head: int
    restore: float  # recovered fraction when this head alone is restored after the source
    ablation_drop_nats: float  # clean log p minus log p with this head zeroed after the source
    attention_to_source: float  # share of this head's attention (response rows) on the source's tokens


def causal_not_attending(heads: Sequence[HeadEffect]) -> list[list[int]]:
    return [
        [h.layer, h.head] for h in heads if h.restore >= CAUSAL_RESTORE and h.attention_to_source < LITTLE_ATTENTION
    ]


def attending_not_causal(heads: Sequence[HeadEffect]) -> list[list[int]]:
    return [[h.layer, h.head] for h in heads if h.attention_to_source >= ATTENDING and h.restore < LITTLE_RESTORE]


def routing_change(clean_choice: np.ndarray, other_choice: np.ndarray) -> float:
    """Share of response tokens whose set of chosen experts differs ([tokens, top_k] each)."""
    same = [set(a.tolist()) == set(b.tolist()) for a, b in zip(clean_choice, other_choice, strict=True)]
    return float(1.0 - np.mean(same)) if same else 0.0


def expert_share(choice: np.ndarray, experts: int) -> list[float]:
    """Each expert's share of the top-k slots over the response tokens ([tokens, top_k] choices)."""
    counts = np.bincount(np.asarray(choice).ravel(), minlength=experts)[:experts]
    return [round(float(c), 6) for c in counts / max(counts.sum(), 1)]


SELF_CHECKS = {  # what holds on any model when the hooks are right
    "span_first_min": 0.95,
    "span_last_max": 0.05,
    "all_attention_after_tolerance": 0.02,
    "unchanged_run_tolerance_nats": 1e-4,
}


def self_check_failures(span: Sequence[float], all_after: float, unchanged_delta: float) -> list[str]:
    out = []
    if span[0] < SELF_CHECKS["span_first_min"]:
        out.append(f"restoring the source's residual at layer 0 recovers {span[0]:.2f} (< 0.95)")
    if span[-1] > SELF_CHECKS["span_last_max"]:
        out.append(f"restoring it at the last layer still recovers {span[-1]:.2f} (> 0.05)")
    if abs(all_after - 1) > SELF_CHECKS["all_attention_after_tolerance"]:
        out.append(f"restoring every attention output after the source recovers {all_after:.3f}, not 1")
    if abs(unchanged_delta) > SELF_CHECKS["unchanged_run_tolerance_nats"]:
        out.append(f"a clean run patched with its own activations moves by {unchanged_delta:+.2e} nats")
    return out


def total_variation(clean_logits: np.ndarray, other_logits: np.ndarray) -> float:
    """Mean over response tokens of the total-variation distance between the router distributions."""
    p, q = _softmax(clean_logits), _softmax(other_logits)
    return float(0.5 * np.abs(p - q).sum(axis=-1).mean()) if len(p) else 0.0


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def reading(
    source: str,
    readout: Sequence[int | None],
    attention_share: float | None,
    heads: Sequence[HeadEffect],
) -> str:
    """One sentence: where the answer leaves the source, what carries it, which heads, and how they attend."""
    first, last = readout
    if first is None:
        where = f"the answer still depends on {source}'s own positions at the last layer"
    elif last is None or last == first:
        where = f"the answer leaves {source} at layer {first}"
    else:
        where = f"the answer leaves {source} at layers {first}-{last}"
    if attention_share is None:
        return where + "; no single layer after it recovers the effect"
    carrier = "attention" if attention_share >= 0.5 else "the MLPs"
    sentence = f"{where} and is carried by {carrier} ({attention_share:.0%} of the single-layer recovery is attention)"
    top = sorted(heads, key=lambda h: -h.restore)[:2]
    top = [h for h in top if h.restore >= CAUSAL_RESTORE]
    if top:
        sentence += ", mostly heads " + " and ".join(f"{h.layer}.{h.head}" for h in top)
        barely = [h for h in top if h.attention_to_source < LITTLE_ATTENTION]
        if barely:
            names = " and ".join(f"{h.layer}.{h.head}" for h in barely)
            sentence += f"; {names} barely attend{'s' if len(barely) == 1 else ''} to {source}"
    return sentence
