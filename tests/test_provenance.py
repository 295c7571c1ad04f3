"""Attention shares read by the on-the-fly probe equal those from eager ``output_attentions``."""

import numpy as np
import torch
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, make_request

from faithaudit.audits.prompt.rag import build_layout
from faithaudit.audits.scoring import score_full_context


def test_probe_shares_equal_eager_attentions(model):
    req = make_request(
        [FILLER_DOCS[0], FICTIONAL_DOC, FILLER_DOCS[1], FILLER_DOCS[2]], FICTIONAL_QUERY, FICTIONAL_RESPONSE
    )
    layout = build_layout(req, model)
    response_ids = model.encode(FICTIONAL_RESPONSE)
    base = score_full_context(model, layout, response_ids, with_attention=True)

    ids = list(base.prompt.ids) + response_ids
    first = len(base.prompt.ids) - 1
    rows = slice(first, first + len(response_ids))
    hf = model.model
    previous = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = hf(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
    finally:
        hf.set_attn_implementation(previous)
    by_layer = []
    for layer_att in out.attentions:  # [1, heads, T, T]
        rows_att = layer_att[0, :, rows, :].double()  # [heads, R, T]
        by_layer.append(
            [
                rows_att[:, :, a:b].sum(-1).mean().item()
                for a, b in (base.prompt.spans[i] for i in range(layout.num_sources))
            ]
        )
    eager_raw = np.array(by_layer).mean(axis=0)
    eager_share = eager_raw / eager_raw.sum()

    assert base.attention is not None
    assert base.attention.by_layer.shape == (model.num_layers, layout.num_sources)
    np.testing.assert_allclose(base.attention.raw, eager_raw, atol=1e-5)
    np.testing.assert_allclose(base.attention.share, eager_share, atol=1e-5)
    np.testing.assert_allclose(base.attention.by_layer, np.array(by_layer), atol=1e-5)
    assert abs(base.attention.share.sum() - 1) < 1e-9
    assert hf.config._attn_implementation == previous


def test_probe_per_head_attention_equals_eager(model):
    """The mechanism audit's per-head attention to a source (``AttentionProbe.per_head``) against eager attention."""
    from faithaudit.audits.provenance import AttentionProbe

    req = make_request([FILLER_DOCS[0], FICTIONAL_DOC], FICTIONAL_QUERY, FICTIONAL_RESPONSE)
    layout = build_layout(req, model)
    prompt = layout.build()
    response_ids = model.encode(FICTIONAL_RESPONSE)
    first = len(prompt.ids) - 1
    probe = AttentionProbe(
        query_positions=(first, first + len(response_ids) - 1), spans=[prompt.spans[1]], num_layers=model.num_layers
    )
    model.score(prompt.ids, response_ids, probe=probe)
    hf = model.model
    previous = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = hf(input_ids=torch.tensor([list(prompt.ids) + response_ids]), output_attentions=True, use_cache=False)
    finally:
        hf.set_attn_implementation(previous)
    a, b = prompt.spans[1]
    for layer in (0, 17, model.num_layers - 1):
        eager = out.attentions[layer][0, :, first : first + len(response_ids), a:b].double().sum(-1).mean(-1)
        np.testing.assert_allclose(probe.per_head[layer][:, 0].numpy(), eager.numpy(), atol=1e-5)
