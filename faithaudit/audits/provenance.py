"""Attention provenance: how much attention the response rows pay to each source.

The probe is an attention function registered with transformers' ``AttentionInterface``. It computes the layer's
real output with SDPA and, while a probe is active (a context variable), also recomputes the softmax for the
*response rows only* and reduces it on the fly to per-source sums. Memory is ``heads x response_rows x T`` for one
layer at a time, never ``layers x heads x T^2``.

Queries: the positions whose logits score the response tokens (prompt_len - 1 .. T - 2).
``attention_raw`` of a source = mean over layers, heads and queries of the probability mass on its tokens.
``attention`` = ``attention_raw`` renormalised over sources (the rest went to the template, the query, sinks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads with the model, not with the plan (the API process builds plans)
    import torch

PROBE_ATTENTION = "faithaudit_probe"

_ACTIVE_PROBE: ContextVar[AttentionProbe | None] = ContextVar("faithaudit_attention_probe", default=None)


@dataclass
class AttentionProbe:
    """Collects per-layer, per-source attention mass for the given query rows (absolute positions)."""

    query_positions: tuple[int, int]  # [first, last] inclusive
    spans: Sequence[tuple[int, int]]  # [start, end) per source
    num_layers: int
    per_layer: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [sources] float64
    per_head: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [heads, sources] float64

    def indicator(self, key_len: int, device: torch.device) -> torch.Tensor:
        """[key_len, sources] 0/1 matrix: which key positions belong to which source."""
        import torch

        ind = torch.zeros(key_len, len(self.spans), dtype=torch.float32, device=device)
        for s, (start, end) in enumerate(self.spans):
            ind[start:end, s] = 1.0
        return ind

    def reading(self) -> AttentionReading:
        if len(self.per_layer) != self.num_layers:
            raise RuntimeError(
                f"attention probe saw {len(self.per_layer)} of {self.num_layers} layers; "
                "the model does not route attention through transformers' AttentionInterface"
            )
        by_layer = np.stack([np.asarray(self.per_layer[i], dtype=np.float64) for i in range(self.num_layers)])
        return AttentionReading.from_raw(by_layer)


@dataclass(frozen=True)
class AttentionReading:
    by_layer: np.ndarray  # [layers, sources] share of all attention (raw)
    raw: np.ndarray  # [sources] mean over layers
    share: np.ndarray  # [sources] raw / sum(raw)

    @classmethod
    def from_raw(cls, by_layer: np.ndarray) -> AttentionReading:
        raw = by_layer.mean(axis=0)
        total = raw.sum()
        share = raw / total if total > 0 else np.full_like(raw, 1.0 / max(len(raw), 1))
        return cls(by_layer=by_layer, raw=raw, share=share)


@contextmanager
def probing(probe: AttentionProbe) -> Iterator[AttentionProbe]:
    token = _ACTIVE_PROBE.set(probe)
    try:
        yield probe
    finally:
        _ACTIVE_PROBE.reset(token)


def probe_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # [batch, heads, q_len, head_dim]
    key: torch.Tensor,  # [batch, kv_heads, k_len, head_dim]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from faithaudit.audits.model import split_attention

    probe = _ACTIVE_PROBE.get()
    softcap = kwargs.get("softcap")
    if probe is not None:
        _record(probe, module, query, key, attention_mask, scaling, softcap)
    elif softcap is None and split_attention.applies(module, query, key):
        return split_attention.prefix_split_forward(query, key, value, scaling), None
    if softcap is not None:  # Gemma 2's logit soft-capping: SDPA has none, the model's own eager kernel does
        import sys

        eager = sys.modules[type(module).__module__].eager_attention_forward
        return eager(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _record(
    probe: AttentionProbe,
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    softcap: float | None = None,
) -> None:
    import torch

    batch, heads, q_len, head_dim = query.shape
    k_len = key.shape[2]
    offset = k_len - q_len  # absolute position of query index 0
    first, last = probe.query_positions
    rows = torch.arange(first, last + 1, device=query.device)  # absolute positions [R]
    q_rows = query[:, :, rows - offset, :]  # [batch, heads, R, head_dim]
    groups = heads // key.shape[1]
    keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key  # [batch, heads, k_len, head_dim]
    scale = scaling if scaling is not None else head_dim**-0.5
    scores = torch.matmul(q_rows.float(), keys.float().transpose(-1, -2)) * scale  # [batch, heads, R, k_len]
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None and attention_mask.dim() == 4:
        rows_mask = attention_mask[:, :, rows - offset, :k_len]
        if rows_mask.dtype == torch.bool:
            scores = scores.masked_fill(~rows_mask, float("-inf"))
        else:
            scores = scores + rows_mask.float()
    else:
        causal = torch.arange(k_len, device=query.device)[None, :] <= rows[:, None]  # [R, k_len]
        scores = scores.masked_fill(~causal, float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # [batch, heads, R, k_len]
    per_source = probs @ probe.indicator(k_len, probs.device)  # [batch, heads, R, sources]
    layer = int(getattr(module, "layer_idx", len(probe.per_layer)))
    probe.per_layer[layer] = per_source.mean(dim=(0, 1, 2)).double().cpu()
    probe.per_head[layer] = per_source.mean(dim=(0, 2)).double().cpu()  # mechanism audits read heads


def register_probe_attention() -> str:
    """Register the probe as an attention implementation (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(PROBE_ATTENTION, probe_attention_forward)
    AttentionMaskInterface.register(PROBE_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return PROBE_ATTENTION
