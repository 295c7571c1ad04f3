"""benchmarks/paired_stats.py: intervals for benchmark comparisons, on inputs whose answers are known by hand."""

import importlib.util
import math
import sys

import numpy as np
import pytest
from cases import ROOT


def _stats():
    if "paired_stats" not in sys.modules:
        spec = importlib.util.spec_from_file_location("paired_stats", ROOT / "benchmarks" / "paired_stats.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["paired_stats"] = module
        spec.loader.exec_module(module)
    return sys.modules["paired_stats"]


def test_median_interval_takes_the_binomial_order_statistics():
    stats = _stats()
    # 20 cases: [x_(6), x_(15)] covers 1 - 2 P(Bin(20, 1/2) <= 5) = 0.9586; [x_(7), x_(14)] only 0.8847
    out = stats.median_interval(list(range(20, 0, -1)))
    assert (out["low"], out["high"], out["cases"]) == (6, 15, 20)
    assert out["coverage"] == pytest.approx(1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2**20, abs=1e-4)
    assert out["median"] == 10.5
    # 4 cases cannot reach 95%: [min, max], which covers 87.5%, and says so
    few = stats.median_interval([1.09, 0.82, 1.08, 1.09])
    assert (few["low"], few["high"], few["coverage"]) == (0.82, 1.09, 0.875)
    assert stats.median_interval([]) is None


def test_median_interval_covers_as_it_says_on_skewed_data():
    stats = _stats()
    rng = np.random.default_rng(1)
    true_median = math.exp(0.0)  # lognormal(0, 1)
    hits = [
        (lambda o: o["low"] <= true_median <= o["high"])(stats.median_interval(rng.lognormal(0, 1, 15)))
        for _ in range(2000)
    ]
    assert stats.median_interval(list(range(15)))["coverage"] >= 0.95
    assert np.mean(hits) >= 0.94  # at or above its stated coverage, up to simulation noise


def test_paired_difference_counts_wins_and_tests_signs():
    stats = _stats()
    out = stats.paired_difference([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0])
    assert (out["difference"], out["low"], out["high"]) == (1.0, 1.0, 1.0)
    assert (out["a_higher"], out["b_higher"], out["ties"]) == (6, 0, 0)
    assert out["sign_test_p"] == pytest.approx(2 / 2**6, abs=1e-4)
    same = stats.paired_difference([0.5, 1.0, 0.0], [0.5, 1.0, 0.0])
    assert (same["difference"], same["low"], same["high"], same["sign_test_p"], same["ties"]) == (0, 0, 0, 1.0, 3)


def test_paired_difference_leaves_out_missing_cases_and_brackets_the_mean():
    stats = _stats()
    a = [0.9, None, 0.8, 0.7, float("nan"), 0.95, 0.6, 0.85]
    b = [0.8, 0.5, 0.85, 0.6, 0.7, 0.9, 0.65, 0.8]
    out = stats.paired_difference(a, b, seed=3)
    kept = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and not math.isnan(x)]
    assert out["cases"] == len(kept) == 6
    assert out["difference"] == pytest.approx(np.mean([x - y for x, y in kept]), abs=1e-4)
    assert out["low"] < out["difference"] < out["high"]
    assert out == stats.paired_difference(a, b, seed=3)  # seeded: the same interval again
    assert stats.paired_difference([None], [1.0]) is None
