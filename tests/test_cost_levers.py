"""The exact cost levers give the naive scores within 1e-3 nats.

- One full-context pass gives the base score, the attention reading and the KV cache at once.
- Cached passes split attention into a prefix part and a causal suffix part, merged by log-sum-exp.
(Prefix reuse for leave-one-out and the neighbour-ordered random masks: tests/test_scoring.py.)
"""

import numpy as np
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, make_request
from test_scoring import _naive_logprob

from faithaudit.audits import interventions
from faithaudit.audits.prompt.rag import build_layout
from faithaudit.audits.run import run_audit
from faithaudit.audits.scoring import logprobs, score_full_context, score_masks


def _case(model, docs):
    layout = build_layout(make_request(docs, FICTIONAL_QUERY, FICTIONAL_RESPONSE), model)
    return layout, model.encode(FICTIONAL_RESPONSE)


def test_one_full_pass_gives_score_attention_and_cache(model):
    layout, response_ids = _case(model, FILLER_DOCS[:2] + [FICTIONAL_DOC] + FILLER_DOCS[2:4])
    passes = model.counter.forward_passes
    base = score_full_context(model, layout, response_ids, with_attention=True)
    assert model.counter.forward_passes == passes + 1
    ids = layout.build().ids
    assert abs(base.score.logprob - _naive_logprob(model, ids, response_ids)) < 1e-3
    assert base.attention is not None and base.attention.share.shape == (layout.num_sources,)
    assert base.cache.ids == tuple(ids) + tuple(response_ids)
    assert all(k.shape[2] == len(base.cache.ids) for k, _ in base.cache.kv)


def test_split_prefix_attention_equals_one_masked_sdpa_call(model):
    layout, response_ids = _case(model, FILLER_DOCS[:3] + [FICTIONAL_DOC] + FILLER_DOCS[3:5])
    n = layout.num_sources
    base = score_full_context(model, layout, response_ids, with_attention=False)
    masks = np.concatenate(
        [interventions.leave_one_out_masks(n), interventions.random_keep_masks(n, 6, keep_probability=0.5, seed=5)]
    )
    try:
        model.split_attention = False
        single = logprobs(score_masks(model, layout, response_ids, masks, base=base))
    finally:
        model.split_attention = True
    split = logprobs(score_masks(model, layout, response_ids, masks, base=base))
    np.testing.assert_allclose(split, single, atol=1e-3)
    naive = [_naive_logprob(model, layout.build(list(m)).ids, response_ids) for m in masks[:3]]
    np.testing.assert_allclose(split[:3], naive, atol=1e-3)


def test_default_audit_is_adaptive_scores_whole_batches_and_no_held_out_masks(model):
    """7 sources (2^7 > 64): the default design is adaptive, in whole batches of 8, with no held-out passes; its
    surrogate puts the fictional fact first."""
    docs = FILLER_DOCS[:3] + [FICTIONAL_DOC] + FILLER_DOCS[3:6]
    req = make_request(docs, FICTIONAL_QUERY, FICTIONAL_RESPONSE, audit={"answer_flip_top_k": 0, "orders": 1})
    assert req.audit.num_ablations is None  # the default: adaptive
    report = run_audit(req, model)
    random_masks = report.cost.by_stage["context_ablation"].forward_passes
    assert 32 <= random_masks <= 64 and random_masks % 8 == 0  # batches of 8; no held-out passes
    assert report.controls.masks.design_kind == "adaptive" and report.controls.masks.held_out == 0
    weights = [s.surrogate_weight for s in report.sources]
    assert int(np.argmax(weights)) == 3
    assert report.summary.surrogate_lds is not None
