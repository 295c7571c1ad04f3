"""``benchmarks/choose_ranking.py``'s bookkeeping: the candidate rankings and the choice among them, over lists and
hand-made records, no model. What the rules find is measured on dev and test cases (``benchmarks/README.md``);
the report's ``surrogate_rank`` is pinned by the golden reports."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from cases import ROOT

from faithaudit.api_schemas import LabelThresholds
from faithaudit.audits.report.labels import label_source, ranks_descending

RULES = LabelThresholds()


def _bench():
    name = "choose_ranking"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def measured(reliance, floor, half_width=None):
    w = floor if half_width is None else half_width
    return [_bench().Measured(r, (r - w, r + w), floor, RULES.supporting) for r in reliance]


def test_cleared_sources_first_by_reliance_then_the_rest_by_surrogate():
    b = _bench()
    # floor 1.0: sources 0 and 3 clear (interval low >= 1.0); source 2 is a bridge leave-one-out cannot see
    reliance, surrogate = [2.5, 0.1, 0.3, 4.0, -0.2], [3.0, 0.0, 2.0, 5.0, 0.5]
    m = measured(reliance, 1.0, half_width=0.5)
    assert b.ablation_ranks(reliance, surrogate, m, clears=b.CLEARANCE["interval"]) == [2, 5, 3, 1, 4]
    assert ranks_descending(reliance) == [2, 4, 3, 1, 5]


@pytest.mark.parametrize("rule", ["interval", "reliance", "surrogate_only", "reliance_only"])
def test_every_rule_ranks_each_source_once(rule):
    b, rng = _bench(), np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        reliance, surrogate = rng.normal(0, 2, n).tolist(), rng.normal(0, 2, n).tolist()
        m = measured(reliance, float(rng.uniform(0, 2)))
        assert sorted(b.ablation_ranks(reliance, surrogate, m, clears=b.CLEARANCE[rule])) == list(range(1, n + 1))


def test_the_two_extreme_rules_are_the_report_s_two_rankings():
    b = _bench()
    reliance, surrogate = [0.5, 3.0, 1.5, -1.0], [2.0, 1.0, 0.0, 3.0]
    m = measured(reliance, 0.2)
    assert b.ablation_ranks(reliance, surrogate, m, clears=b.CLEARANCE["reliance_only"]) == ranks_descending(reliance)
    assert b.ablation_ranks(reliance, surrogate, m, clears=b.CLEARANCE["surrogate_only"]) == ranks_descending(surrogate)


def test_interval_clearance_is_what_the_labels_call_supporting_or_decisive():
    b, rng = _bench(), np.random.default_rng(1)
    for _ in range(500):
        r, floor, w = float(rng.normal(0, 2)), float(rng.uniform(0, 2)), float(rng.uniform(0, 2))
        verdict = label_source(reliance=r, interval=(r - w, r + w), floor=floor, attention_ratio=None,
                               positional=False, flip_counted=False, rules=RULES)  # fmt: skip
        cleared = b.CLEARANCE["interval"](b.Measured(r, (r - w, r + w), floor, RULES.supporting))
        assert cleared == (verdict.label in {"supporting", "decisive"}), (r, floor, w, verdict)


def test_the_choice_takes_recall_at_2_then_recall_at_1_then_the_listed_order():
    choose = _bench().choose
    row = lambda rule, r1, r2: {"rule": rule, "recall_at_1": r1, "recall_at_2": r2}  # noqa: E731
    assert choose([row("interval", 0.9, 0.5), row("reliance", 0.1, 0.6)]) == "reliance"
    assert choose([row("interval", 0.85, 0.575), row("surrogate_only", 0.9, 0.575)]) == "surrogate_only"
    assert choose([row("reliance_only", 0.9, 0.5), row("interval", 0.9, 0.5)]) == "interval"


def _record(case_id, reliance, surrogate=None):
    methods = {"default_audit": {"scores": reliance}}
    if surrogate is not None:
        methods["default_audit_surrogate"] = {"scores": surrogate}
    return {"id": case_id, "gold": [0], "methods": methods}


def test_a_controls_only_row_takes_the_full_audit_s_surrogate_and_says_how_far_its_reliance_is():
    b = _bench()
    full = {"a": _record("a", [1.0, 0.0], [0.2, 0.8])}
    rows, gap = b.with_surrogate([_record("a", [1.0004, 0.0])], full)
    assert rows[0]["methods"]["default_audit_surrogate"]["scores"] == [0.2, 0.8]
    assert gap == pytest.approx(4e-4)
    assert b.with_surrogate([_record("b", [0.0], [1.0])], full) == ([_record("b", [0.0], [1.0])], None)
