"""Context ablation: an explicit count is honoured exactly; the adaptive default stops once the fit is stable."""

import numpy as np
import pytest

from faithaudit.audits import ablation, interventions
from faithaudit.audits.reliance import LassoSolver

TRUE_WEIGHTS = np.array([0.0, 4.0, 0.0, 1.5, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0])


class LinearScorer:
    """A linear target plus a little noise; records every batch it scores."""

    def __init__(self, weights=TRUE_WEIGHTS, noise=0.05, seed=0):
        self.weights, self.noise = weights, noise
        self.rng = np.random.default_rng(seed)
        self.batches: list[np.ndarray] = []

    def __call__(self, masks):
        self.batches.append(masks.copy())
        return masks.astype(float) @ self.weights - 3.0 + self.noise * self.rng.standard_normal(len(masks))

    @property
    def scored(self) -> int:
        return sum(len(b) for b in self.batches)


def test_fixed_count_is_honoured_exactly():
    scorer = LinearScorer()
    res = ablation.fixed_ablation(scorer, 10, 24, keep_probability=0.5, seed=0, solver=LassoSolver(0.01))
    assert res.random_masks == 24 and res.held_out_masks == interventions.held_out_count(24)
    assert scorer.scored == 24 + interventions.held_out_count(24)
    assert np.argmax(res.surrogate.weights) == 1
    assert res.lds is not None and res.lds > 0.8


def test_adaptive_stops_early_on_a_stable_fit_and_uses_the_fixed_mask_sequence():
    scorer = LinearScorer()
    n = len(TRUE_WEIGHTS)
    loo = interventions.leave_one_out_masks(n)
    res = ablation.adaptive_ablation(
        scorer,
        n,
        keep_probability=0.5,
        seed=0,
        solver=LassoSolver(0.01),
        reused_masks=loo,
        reused_targets=loo.astype(float) @ TRUE_WEIGHTS - 3.0,
    )
    policy = ablation.AdaptivePolicy()
    assert res.stopped_early and policy.min_masks <= res.random_masks < policy.max_masks
    assert res.random_masks == scorer.scored and res.held_out_masks == 0 and res.reused_samples == n
    # The masks it scored are the first ones of the fixed run with the same seed.
    fixed = interventions.random_keep_masks(n, res.random_masks, keep_probability=0.5, seed=0)
    np.testing.assert_array_equal(np.concatenate(scorer.batches), fixed)
    assert list(np.argsort(-res.surrogate.weights)[:2]) == [1, 3]
    assert res.lds is not None and res.lds > 0.8  # held out: each batch predicted before it joined the fit


def test_adaptive_never_exceeds_its_cap_on_a_noisy_target():
    scorer = LinearScorer(weights=np.zeros(10), noise=1.0)
    policy = ablation.AdaptivePolicy(max_masks=32, min_masks=16, batch=8)
    res = ablation.adaptive_ablation(scorer, 10, keep_probability=0.5, seed=1, solver=LassoSolver(0.01), policy=policy)
    assert res.random_masks <= 32 and scorer.scored == res.random_masks


@pytest.mark.parametrize(
    ("previous", "current", "stable"),
    [
        ([0.0, 2.0, 1.0], [0.0, 2.1, 0.95], True),
        ([0.0, 2.0, 1.0], [1.2, 2.0, 1.0], False),  # another top-2 set
        ([0.0, 2.0, 1.0], [0.0, 3.0, 1.5], False),  # same order, weights moved by > 20%
    ],
)
def test_stability_rule(previous, current, stable):
    assert ablation.is_stable(np.array(previous), np.array(current), top_k=2, tolerance=0.2) is stable
