"""On the real model: attention is reported against neutral text at the same position, and the opt-in stability
variants (sampled responses, query paraphrases) are seeded, audited with attention and leave-one-out, and compared
with the audited verdicts."""

from __future__ import annotations

import pytest
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, make_request

from faithaudit.audits.run import run_audit

CHEAP = {"methods": ["attention", "leave_one_out"], "placebos": 0, "orders": 1, "answer_flip_top_k": 0}


def _request(audit: dict):
    docs = [FILLER_DOCS[0], FICTIONAL_DOC, FILLER_DOCS[1]]
    return make_request(docs, FICTIONAL_QUERY, FICTIONAL_RESPONSE, audit=audit)


def test_stability_variants_are_seeded_and_a_paraphrase_keeps_the_fact_on_top(model):
    audit = CHEAP | {"sampled_responses": 2, "paraphrases": ["Which town is the capital of Vellmora?"]}
    request = _request(audit)
    a, b = run_audit(request, model), run_audit(request, model)
    st = a.stability
    assert [v.kind for v in st.variants] == ["sampled", "sampled", "paraphrase"]
    assert [v.text for v in st.variants] == [v.text for v in b.stability.variants]  # seeded samples
    assert st.variants[0].text != st.variants[1].text  # seed, seed + 1: two different samples
    assert st.variants[2].reliance_top1 == "key"  # the paraphrased query still needs the fact
    rows = {r.id: r for r in st.sources}
    assert rows["key"].reliance_top1_rate >= 1 / 3 and set(rows) == {"f1", "key", "f2"}
    assert all(0.0 <= r.label_agreement <= 1.0 for r in st.sources)
    assert a.cost.by_stage["stability"].forward_passes >= 3 * 4  # per variant: full pass + 3 leave-one-out


def test_attention_is_read_against_neutral_text_at_each_position(model):
    request = _request(CHEAP)
    report = run_audit(request, model)
    baselines = [s.attention_position_baseline for s in report.sources]
    assert sum(baselines) == pytest.approx(1.0, abs=1e-4)  # shares over the sources of the all-neutral pass
    for s in report.sources:
        assert s.attention_position_ratio == pytest.approx(s.attention / s.attention_position_baseline, rel=1e-3)
        assert 0 <= s.attention_layer_argmax < model.num_layers and s.attention_layer_max >= s.attention - 1e-6
        lo, hi = s.token_span
        assert s.attention_per_token == pytest.approx(s.attention / (hi - lo), rel=1e-3)
    # position and length alone move attention far from an even split: why the raw share cannot be read alone
    assert max(baselines) - min(baselines) > 0.1
