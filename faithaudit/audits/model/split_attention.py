"""Attention for a pass that reuses a cached prefix, split into a prefix part and a causal suffix part.

When ``q`` fresh tokens follow ``p`` cached ones, every fresh query sees all ``p`` prefix keys and, causally, the
fresh keys up to itself. Instead of one SDPA call over ``p + q`` keys with an explicit ``[q, p + q]`` mask, this runs
two mask-free kernels (the prefix part without a mask, the suffix part with ``is_causal``) and merges them exactly
by their log-sum-exps: ``out = (e^{l1} o1 + e^{l2} o2) / (e^{l1} + e^{l2})``.

It applies only to one unpadded sequence on CPU (the adapter's scoring passes); anything else goes to SDPA.
Whether it is used is a context variable set by the adapter, so other callers of the same model (e.g. a peer tool
running batched, padded passes) never take this path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_SPLIT_PREFIX: ContextVar[bool] = ContextVar("faithaudit_split_prefix", default=False)


@contextmanager
def split_prefix_attention(enabled: bool = True) -> Iterator[None]:
    token = _SPLIT_PREFIX.set(enabled)
    try:
        yield
    finally:
        _SPLIT_PREFIX.reset(token)


def applies(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor) -> bool:
    """A cached-prefix pass of one sequence on CPU, with at least two fresh tokens, in a full-causal layer."""
    q_len, k_len = query.shape[2], key.shape[2]
    return (
        _SPLIT_PREFIX.get()
        and query.shape[0] == 1
        and query.device.type == "cpu"
        and 1 < q_len < k_len
        and getattr(module, "sliding_window", None) is None
    )


def prefix_split_forward(
    query: torch.Tensor,  # [1, heads, q, d]
    key: torch.Tensor,  # [1, kv_heads, p + q, d]
    value: torch.Tensor,
    scaling: float | None,
) -> torch.Tensor:
    """Exact causal attention of the fresh queries over prefix + fresh keys; returns [1, q, heads, d]."""
    heads, q_len = query.shape[1], query.shape[2]
    groups = heads // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    p = key.shape[2] - q_len
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    o1, l1 = flash(query, key[:, :, :p], value[:, :, :p], 0.0, False, scale=scaling)[:2]
    o2, l2 = flash(query, key[:, :, p:], value[:, :, p:], 0.0, True, scale=scaling)[:2]
    m = torch.maximum(l1, l2)
    w1 = torch.exp(l1 - m)[..., None]
    w2 = torch.exp(l2 - m)[..., None]
    out = (o1 * w1 + o2 * w2) / (w1 + w2)  # [1, heads, q, d]
    return out.to(query.dtype).transpose(1, 2).contiguous()
