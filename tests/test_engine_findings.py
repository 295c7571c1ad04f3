"""What the engine finds on real cases with the real model."""

import pytest
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, make_request

from faithaudit.audits.run import run_audit

FAST = {"methods": ["leave_one_out", "no_context"], "answer_flip_top_k": 0, "placebos": 0, "orders": 1}


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_fictional_fact_ranks_first_wherever_it_is(model, position):
    fillers = FILLER_DOCS[:4]
    index = {"first": 0, "middle": 2, "last": 4}[position]
    docs = fillers[:index] + [FICTIONAL_DOC] + fillers[index:]
    report = run_audit(make_request(docs, FICTIONAL_QUERY, FICTIONAL_RESPONSE, audit=FAST), model)
    key = next(s for s in report.sources if s.id == "key")
    assert key.reliance_rank == 1
    assert key.reliance >= 2.0
    assert report.summary.parametric is False


def test_common_knowledge_answer_is_parametric(model):
    fictional = run_audit(
        make_request([FILLER_DOCS[5], FICTIONAL_DOC, FILLER_DOCS[6]], FICTIONAL_QUERY, FICTIONAL_RESPONSE, audit=FAST),
        model,
    )
    common = run_audit(
        make_request(
            [FILLER_DOCS[5], FILLER_DOCS[7], FILLER_DOCS[6]],
            "What is the capital of France?",
            "The capital of France is Paris.",
            audit=FAST,
        ),
        model,
    )
    f, c = fictional.summary.context_reliance, common.summary.context_reliance
    assert c <= f / 2 and c <= f - 5, (c, f)
    assert common.summary.parametric is True
    assert any(flag.startswith("parametric_answer") for flag in common.summary.flags)


def test_citing_an_unused_document_lowers_citation_precision(model):
    docs = [FICTIONAL_DOC, FILLER_DOCS[1], FILLER_DOCS[2]]
    report = run_audit(
        make_request(
            docs,
            FICTIONAL_QUERY,
            "The capital of Vellmora is Tarsquin [key][3].",
            audit=FAST,
            thresholds={"min_citation_precision": 0.9},
        ),
        model,
    )
    cited = {s.id for s in report.sources if s.cited}
    assert cited == {"key", "f3"}  # [3] is the third document by position
    assert report.summary.citation_precision is not None and report.summary.citation_precision < 1
    assert report.gate.passed is False
    assert report.gate.failures[0].threshold == "min_citation_precision"
    assert any("cited_not_relied: f3" in flag for flag in report.summary.flags)


def test_full_report_has_every_figure(model):
    report = run_audit(
        make_request(
            [FILLER_DOCS[0], FICTIONAL_DOC, FILLER_DOCS[1]],
            FICTIONAL_QUERY,
            FICTIONAL_RESPONSE,
            audit={"num_ablations": 8, "answer_flip_top_k": 1},
            model={"production_model": "some-hosted-model"},
            thresholds={"min_context_reliance": 1000.0},
        ),
        model,
    )
    key = report.sources[1]
    assert key.label == "decisive" and key.reliance_rank == 1 and key.answer_changed is not None
    assert all(s.attention is not None and s.surrogate_weight is not None for s in report.sources)
    assert abs(sum(s.attention for s in report.sources) - 1) < 1e-5
    assert report.summary.surrogate_lds is not None and report.summary.context_token_share is not None
    assert report.model.is_proxy and "some-hosted-model" in report.model.note
    assert not report.gate.passed and report.gate.failures[0].measured == report.summary.context_reliance
    stages = report.cost.by_stage
    assert set(stages) == {
        "full_context", "attention_baseline", "leave_one_out", "orders", "no_context", "placebos",
        "context_ablation", "answer_flip",
    }  # fmt: skip
    assert all(s.attention_position_ratio is not None and s.surrogate_interval is not None for s in report.sources)
    assert all(s.banzhaf is not None for s in report.sources)  # 2^3 masks fit the budget of 8: exhaustive
    assert report.summary.noise_floor_nats is not None and all(s.reliance_interval for s in report.sources)
    assert any("proxy for some-hosted-model" in line for line in report.limitations)
    assert report.cost.forward_passes == sum(s.forward_passes for s in stages.values())
