"""Attention rollout (Abnar & Zuidema, 2020) for the response rows, read in one full-context pass.

While ``capturing()`` is active the model's attention function is swapped for one that also keeps each layer's
head-averaged attention matrix ``[T, T]``. Rollout mixes in the residual stream (``0.5 A + 0.5 I``, rows
renormalised) and multiplies the layers from the top down, starting from the response rows only, so the cost is
``layers x rows x T^2``, not ``layers x T^3``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from faithaudit.audits.provenance import PROBE_ATTENTION, probe_attention_forward


@contextmanager
def capturing(store: dict[int, torch.Tensor]) -> Iterator[dict[int, torch.Tensor]]:
    from transformers import AttentionInterface

    def capture(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        heads, q_len, head_dim = query.shape[1], query.shape[2], query.shape[3]
        k_len = key.shape[2]
        groups = heads // key.shape[1]
        keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key
        scale = scaling if scaling is not None else head_dim**-0.5
        scores = torch.matmul(query.float(), keys.float().transpose(-1, -2)) * scale  # [1, heads, q, k]
        rows = torch.arange(q_len)[:, None] + (k_len - q_len)
        scores = scores.masked_fill(torch.arange(k_len)[None, :] > rows, float("-inf"))
        store[int(getattr(module, "layer_idx", len(store)))] = torch.softmax(scores, dim=-1).mean(dim=(0, 1))
        return probe_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)

    AttentionInterface.register(PROBE_ATTENTION, capture)
    try:
        yield store
    finally:
        AttentionInterface.register(PROBE_ATTENTION, probe_attention_forward)


def rollout_rows(layers: Sequence[torch.Tensor], rows: Sequence[int]) -> np.ndarray:
    """[len(rows), T] rollout of the given query rows through all layers (layer 0 first in ``layers``)."""
    t = layers[0].shape[-1]
    eye = torch.eye(t)

    def mixed(a: torch.Tensor) -> torch.Tensor:
        m = 0.5 * a + 0.5 * eye
        return m / m.sum(dim=-1, keepdim=True)

    v = mixed(layers[-1])[list(rows)]  # [R, T]
    for a in reversed(layers[:-1]):
        v = v @ mixed(a)
    return v.double().numpy()


@torch.inference_mode()
def rollout_shares(model, prompt_ids: Sequence[int], response_ids: Sequence[int], spans) -> np.ndarray:
    """Per-source rollout mass of the rows that score the response, renormalised over sources."""
    ids = list(prompt_ids) + list(response_ids)
    store: dict[int, torch.Tensor] = {}
    with capturing(store):
        model.model(input_ids=torch.tensor([ids]), use_cache=False, logits_to_keep=1)
    layers = [store[i] for i in range(len(store))]
    first = len(prompt_ids) - 1
    roll = rollout_rows(layers, range(first, first + len(response_ids))).mean(axis=0)  # [T]
    mass = np.array([roll[s:e].sum() for s, e in spans])
    return mass / mass.sum() if mass.sum() > 0 else np.full(len(spans), 1.0 / len(spans))
