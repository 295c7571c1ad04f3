"""Gate bookkeeping (pure: no model needed)."""

from faithaudit.api_schemas import Summary, Thresholds
from faithaudit.audits.report.gate import evaluate_gate


def _summary(**kw) -> Summary:
    return Summary(num_sources=3, response_tokens=5, logprob_full=-3.0, **kw)


def test_thresholds_pass_and_fail_with_measured_figures():
    s = _summary(context_reliance=4.0, faithfulness_score=0.2, label_counts={"attended_not_relied": 2})
    gate = evaluate_gate(
        Thresholds(min_context_reliance=1.0, min_faithfulness_score=0.5, max_attended_not_relied=1),
        s,
        methods=["attention", "leave_one_out", "no_context"],
    )
    assert not gate.passed
    assert [(f.threshold, f.limit, f.measured) for f in gate.failures] == [
        ("min_faithfulness_score", 0.5, 0.2),
        ("max_attended_not_relied", 1, 2),
    ]
    assert evaluate_gate(None, s, methods=[]).passed


def test_a_threshold_on_an_unmeasured_figure_fails():
    s = _summary(label_counts={"supporting": 2})
    gate = evaluate_gate(
        Thresholds(max_attended_not_relied=0, min_citation_precision=0.5), s, methods=["leave_one_out"]
    )
    assert {f.threshold for f in gate.failures} == {"max_attended_not_relied", "min_citation_precision"}
    assert all(f.measured is None and "not measured" in f.message for f in gate.failures)


def test_a_flip_does_not_make_a_distracting_source_decisive():
    from faithaudit.api_schemas import LabelThresholds
    from faithaudit.audits.report.labels import label_source

    rules = LabelThresholds()
    args = {"attention": None, "num_sources": 3, "rules": rules}
    assert label_source(reliance=-2.8, answer_changed=True, **args) == "distracting"
    assert label_source(reliance=0.1, answer_changed=True, **args) == "decisive"
    assert label_source(reliance=2.5, answer_changed=False, **args) == "decisive"
