"""Gate bookkeeping (pure: no model needed)."""

from faithaudit.api_schemas import Summary, Thresholds
from faithaudit.audits.report.gate import evaluate_gate


def _summary(**kw) -> Summary:
    return Summary(num_sources=3, response_tokens=5, logprob_full=-3.0, **kw)


def test_thresholds_pass_and_fail_with_measured_figures():
    s = _summary(
        context_reliance=4.0, context_token_share=0.2, noise_floor_nats=1.4, label_counts={"attended_not_relied": 2}
    )
    gate = evaluate_gate(
        Thresholds(
            min_context_reliance=1.0, min_context_token_share=0.5, max_attended_not_relied=1, max_noise_floor_nats=1.0
        ),
        s,
        methods=["attention", "leave_one_out", "no_context"],
    )
    assert not gate.passed
    assert [(f.threshold, f.limit, f.measured) for f in gate.failures] == [
        ("min_context_token_share", 0.5, 0.2),
        ("max_noise_floor_nats", 1.0, 1.4),
        ("max_attended_not_relied", 1, 2),
    ]
    assert gate.failures[1].message == "noise_floor_nats 1.4 > 1"
    assert gate.failures[2].message == "2 sources attended but not relied on > 1"
    assert evaluate_gate(None, s, methods=[]).passed


def test_the_deprecated_threshold_name_is_an_alias():
    import pytest
    from pydantic import ValidationError

    assert Thresholds.model_validate({"min_faithfulness_score": 0.4}).min_context_token_share == 0.4
    with pytest.raises(ValidationError, match="min_context_token_share only"):
        Thresholds.model_validate({"min_faithfulness_score": 0.4, "min_context_token_share": 0.5})
    schema = Thresholds.model_json_schema()["properties"]["min_faithfulness_score"]
    assert schema.get("deprecated") is True and "Deprecated alias" in schema["description"]


def test_version_1_reports_stay_readable():
    from faithaudit.api_schemas import AuditReport

    body = {
        "schema_version": "1", "query": "q", "response": "r", "response_origin": "request", "prompt_template": "t",
        "granularity": "document", "methods": ["leave_one_out"],
        "model": {"name": "m", "revision": "x", "context_window": 8, "is_proxy": False},
        "sources": [{"id": "d1", "kind": "document", "document_id": "d1", "text": "x", "text_preview": "x",
                     "token_span": [0, 1], "reliance": 0.1, "label": "unused"}],
        "summary": {"num_sources": 1, "response_tokens": 1, "logprob_full": -1.0, "faithfulness_score": 0.25},
        "gate": {"passed": True}, "cost": {"forward_passes": 1, "tokens_processed": 9, "seconds": 0.1},
    }  # fmt: skip
    report = AuditReport.model_validate(body)
    assert report.schema_version == "1" and report.summary.context_token_share == 0.25
    assert report.sources[0].label == "unused" and report.controls is None


def test_a_threshold_on_an_unmeasured_figure_fails():
    s = _summary(label_counts={"supporting": 2})
    gate = evaluate_gate(
        Thresholds(max_attended_not_relied=0, min_citation_precision=0.5), s, methods=["leave_one_out"]
    )
    assert {f.threshold for f in gate.failures} == {"max_attended_not_relied", "min_citation_precision"}
    assert all(f.measured is None and "not measured" in f.message for f in gate.failures)


def test_labels_follow_the_interval_against_the_noise_floor():
    from faithaudit.api_schemas import LabelThresholds
    from faithaudit.audits.report.labels import label_source

    def label(r, interval, floor=0.6, flip=False, attention=None, positional=False):
        return label_source(
            reliance=r,
            interval=interval,
            floor=floor,
            attention_ratio=None if attention is None else attention * 4,
            positional=positional,
            flip_counted=flip,
            rules=LabelThresholds(),
        ).label

    assert label(20.9, (19.0, 21.0)) == "decisive"
    assert label(2.4, (1.1, 2.6)) == "supporting"  # the whole interval must clear 1.25 nats
    assert label(2.4, (1.3, 2.6)) == "decisive"
    assert label(0.88, (0.2, 1.1)) == "within_noise"  # the bundled demo's Eiffel Tower paragraph
    assert label(0.46, (0.3, 0.5), floor=0.2, flip=True) == "decisive"  # a counted flip, above the floor
    assert label(0.46, (0.3, 0.7), floor=0.9, flip=True) == "within_noise"  # ... but not inside the noise
    assert label(-0.8, (-1.2, -0.4)) == "within_noise"  # a neutral paragraph's -0.4 .. -1.2
    assert label(-2.8, (-3.0, -2.5), flip=True) == "distracting"
    assert label(0.1, (-0.2, 0.3), attention=0.6) == "attended_not_relied"
    assert label(25.0, (24.0, 26.0), attention=0.01) == "decisive"  # attention never overrides decisive
    assert label(1.5, (1.0, 1.8), attention=0.01) == "relied_not_attended"
    # against the position baseline: the ratio is what counts, and the reason says what it was compared with
    verdict = label_source(
        reliance=0.1,
        interval=(-0.2, 0.3),
        floor=0.6,
        attention_ratio=2.5,
        positional=True,
        flip_counted=False,
        rules=LabelThresholds(),
    )
    assert verdict.label == "attended_not_relied" and "neutral text at its position" in verdict.reason
