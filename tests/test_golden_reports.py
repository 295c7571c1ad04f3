"""Behaviour pinned across refactors: the RAG and agent examples (``num_ablations: 8``) reproduce the reports
recorded before the engine was split into stages (``tests/data/golden/record.py``): labels, ranks, flags and every
other non-float exactly, every float within 5e-4 (or 5e-5 relative); timings are ignored. Not 1e-5: the same
float32 passes on another CPU family differ by up to ~1e-4 nats (AMD EPYC against the machine that recorded them).
"""

from __future__ import annotations

import json
import math

import pytest
from cases import ROOT

GOLDEN = ROOT / "tests" / "data" / "golden"
TOLERANCE = 5e-4
RELATIVE = 5e-5  # ratios of small differences (reliance_z) carry the same error, scaled up
TIMINGS = {"seconds"}


def differences(expected, actual, path: str = "", *, tolerance: float = TOLERANCE) -> list[str]:
    """Every place where ``actual`` departs from ``expected`` (floats compared within ``tolerance``)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}.{k}: missing" for k in expected.keys() - actual.keys()]
        out += [f"{path}.{k}: unexpected" for k in actual.keys() - expected.keys()]
        for k in expected.keys() & actual.keys():
            if k not in TIMINGS:
                out += differences(expected[k], actual[k], f"{path}.{k}", tolerance=tolerance)
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(actual)} items, expected {len(expected)}"]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [d for i, (e, a) in pairs for d in differences(e, a, f"{path}[{i}]", tolerance=tolerance)]
    floats = isinstance(expected, float) or isinstance(actual, float)
    if floats and not isinstance(expected, bool) and not isinstance(actual, bool):
        if isinstance(expected, int | float) and isinstance(actual, int | float):
            if math.isclose(expected, actual, rel_tol=RELATIVE, abs_tol=tolerance):
                return []
    elif expected == actual and type(expected) is type(actual):
        return []
    return [f"{path}: {actual!r}, expected {expected!r}"]


def test_comparison_catches_what_it_must():
    base = {"a": 1.0, "label": "decisive", "ranks": [1, 2], "cost": {"seconds": 3.0}}
    assert differences(base, {**base, "a": 1.0004, "cost": {"seconds": 9.0}}) == []
    assert differences(base, {**base, "a": 1.001}) == [".a: 1.001, expected 1.0"]
    assert differences(base, {**base, "label": "supporting"})
    assert differences(base, {**base, "ranks": [2, 1]})
    assert differences(base, {**base, "extra": None}) == [".extra: unexpected"]


@pytest.mark.parametrize("name", ["rag", "agent"])
def test_golden_report_reproduced(name, golden_reports):
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    actual = golden_reports[name].model_dump(mode="json")
    assert [s["label"] for s in actual["sources"]] == [s["label"] for s in expected["sources"]]
    assert differences(expected, actual) == []
