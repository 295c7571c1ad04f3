"""Context ablation designs: an explicit count is honoured exactly with distinct masks and a cross-validated LDS;
small n is exhaustive (exact Banzhaf values, cross-validated LDS); adaptive stops once the fit is stable; every
design bootstraps an interval per weight."""

import numpy as np
import pytest

from faithaudit.audits import ablation, interventions
from faithaudit.audits.reliance import LassoSolver

TRUE_WEIGHTS = np.array([0.0, 4.0, 0.0, 1.5, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0])


class LinearScorer:
    """A log-probability linear in the mask plus a little noise (well below 0, where ContextCite's logit target is
    nearly linear in it); records every batch it scores."""

    def __init__(self, weights=TRUE_WEIGHTS, noise=0.05, seed=0):
        self.weights, self.noise = weights, noise
        self.rng = np.random.default_rng(seed)
        self.batches: list[np.ndarray] = []

    def __call__(self, masks):
        self.batches.append(masks.copy())
        return masks.astype(float) @ self.weights - 12.0 + self.noise * self.rng.standard_normal(len(masks))

    @property
    def scored(self) -> int:
        return sum(len(b) for b in self.batches)


def test_fixed_count_is_honoured_exactly():
    scorer = LinearScorer()
    res = ablation.fixed_ablation(scorer, 10, 24, keep_probability=0.5, seed=0, solver=LassoSolver(0.01), tokens=3)
    assert res.design == "random" and res.lds_method == "cross_validation"
    assert res.random_masks == 24 and res.held_out_masks == 0
    assert scorer.scored == 24  # the LDS is cross-validated over the fit masks: no extra pass
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
        tokens=3,
        reused_masks=loo,
        reused_logprobs=loo.astype(float) @ TRUE_WEIGHTS - 12.0,
    )
    policy = ablation.AdaptivePolicy()
    assert res.stopped_early and policy.min_masks <= res.random_masks < policy.max_masks
    assert res.random_masks == scorer.scored and res.held_out_masks == 0 and res.reused_samples == n
    # The masks it scored are the first ones of the fixed run with the same seed.
    fixed = interventions.distinct_keep_masks(n, res.random_masks, keep_probability=0.5, seed=0)
    np.testing.assert_array_equal(np.concatenate(scorer.batches), fixed)
    assert list(np.argsort(-res.surrogate.weights)[:2]) == [1, 3]
    assert res.lds is not None and res.lds > 0.8  # held out: each batch predicted before it joined the fit


def test_adaptive_never_exceeds_its_cap_on_a_noisy_target():
    scorer = LinearScorer(weights=np.zeros(10), noise=1.0)
    policy = ablation.AdaptivePolicy(max_masks=32, min_masks=16, batch=8)
    res = ablation.adaptive_ablation(
        scorer, 10, keep_probability=0.5, seed=1, solver=LassoSolver(0.01), tokens=3, policy=policy
    )
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


def test_fit_masks_are_distinct_and_no_evaluation_mask_is_in_the_fit_set():
    scorer = LinearScorer(weights=TRUE_WEIGHTS[:6])
    res = ablation.fixed_ablation(scorer, 6, 40, keep_probability=0.5, seed=2, solver=LassoSolver(0.01), tokens=3)
    (fit,) = scorer.batches
    assert len({m.tobytes() for m in fit}) == 40 == res.random_masks
    assert res.lds_method == "cross_validation" and res.lds is not None and res.lds > 0.8
    with pytest.raises(AssertionError, match="fit set"):  # each fold's evaluation masks are checked against its fit
        ablation.cross_validated_lds(
            np.vstack([fit, fit[:1]]), np.zeros(41), solver=LassoSolver(0.01), tokens=3, seed=0
        )
    with pytest.raises(AssertionError, match="fit set"):
        ablation.assert_disjoint(fit, fit[:1])


def test_distinct_masks_keep_the_stream_order_and_run_out_honestly():
    first = interventions.distinct_keep_masks(8, 10, keep_probability=0.5, seed=4)
    longer = interventions.distinct_keep_masks(8, 30, keep_probability=0.5, seed=4)
    np.testing.assert_array_equal(longer[:10], first)
    every = interventions.distinct_keep_masks(3, 100, keep_probability=0.5, seed=4)
    assert len(every) == 8 and len({m.tobytes() for m in every}) == 8


def test_small_n_is_exhaustive_with_exact_banzhaf_values_and_cross_validation():
    # An additive game plus one interaction (sources 0 and 1 only together): Banzhaf splits the interaction.
    def score(masks):
        m = masks.astype(float)
        return m @ np.array([1.0, 0.5, 0.0, -0.4]) + 2.0 * m[:, 0] * m[:, 1] - 15.0

    assert ablation.plan_design(4, 64) == "exhaustive" and ablation.plan_design(6, 64) == "exhaustive"
    assert ablation.plan_design(7, 64) == "random" and ablation.planned_passes(4, 64) == 16
    res = ablation.run_ablation(score, 4, 64, keep_probability=0.5, seed=0, solver=LassoSolver(0.01), tokens=2)
    assert res.design == "exhaustive" and res.lds_method == "cross_validation" and res.random_masks == 16
    np.testing.assert_allclose(res.banzhaf, [2.0, 1.5, 0.0, -0.4], atol=1e-12)
    np.testing.assert_allclose(res.banzhaf_range[0], [1.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(res.banzhaf_range[3], [-0.4, -0.4], atol=1e-12)
    assert res.lds is not None and res.lds > 0.8


def test_bootstrap_interval_brackets_each_weight_and_is_seeded():
    scorer = LinearScorer(noise=0.3)
    masks = interventions.distinct_keep_masks(10, 64, keep_probability=0.5, seed=0)
    targets = scorer(masks)
    kw = dict(solver=LassoSolver(0.01), tokens=1, seed=5)
    interval = ablation.bootstrap_interval(masks, targets, **kw)
    assert interval.shape == (10, 2) and np.all(interval[:, 0] <= interval[:, 1])
    assert interval[1, 0] > 3.0 and interval[3, 0] > 0.8  # the real effects are clear of zero
    assert interval[0, 0] <= 0.0 <= interval[0, 1] + 1e-9  # a null source's interval reaches zero
    np.testing.assert_array_equal(interval, ablation.bootstrap_interval(masks, targets, **kw))
