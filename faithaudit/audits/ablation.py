"""Context ablation: score keep-masks, fit ContextCite's surrogate (``reliance``), and say how well it fits.

Designs (``plan_design``):
- ``exhaustive``: when 2^n <= the mask budget, every one of the 2^n masks is scored. The sources' exact Banzhaf
  values follow (the mean change of log p(response) from adding the source, over all contexts without it, with the
  [min, max] of that change), and the fit is measured by 4-fold cross-validation over the masks.
- ``random`` (an explicit ``num_ablations``): ``count`` distinct Bernoulli(keep_probability) masks (drawn without
  replacement from one seeded stream) fit the surrogate, and 4-fold cross-validation over them measures it: no
  evaluation mask is in the fold's fit (asserted), and no extra pass is made. On the peer-exact benchmark the
  cross-validated LDS estimated the fit's LDS on independent masks better than 16 held-out masks did (mean error
  0.051 vs 0.077 on HotpotQA, 0.072 vs 0.122 on MuSiQue; ``benchmarks/ablation_levers.py``), so those 16 passes
  were dropped.
- ``adaptive`` (``audit.num_ablations: null``, the default): distinct masks come in batches of ``batch`` from one seeded
  stream of ``max_masks``. Passes the audit has already made (leave-one-out, no context, the full context) join the
  fit as free samples. Before a batch joins the fit it is predicted by the fit so far: that prediction is held
  out, so the reported LDS costs no extra pass. After each fit from ``min_masks`` on, the run stops when the fit is
  stable: the same top sources as the previous fit and a relative change of the weights of at most ``tolerance``.

Every design bootstraps the fit over its masks (seeded, ``BOOTSTRAP_RESAMPLES`` resamples, no extra pass) for a 95%
interval on each weight. The scorer is a strategy: ``score(masks [m, n] bool) -> log p(response) [m]`` (nats).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faithaudit.audits import interventions
from faithaudit.audits.reliance import Surrogate, SurrogateSolver, fit_surrogate, sequence_logit, spearman

Scorer = Callable[[np.ndarray], np.ndarray]

BOOTSTRAP_RESAMPLES = 200
CV_FOLDS = 4


@dataclass(frozen=True)
class AblationResult:
    surrogate: Surrogate
    lds: float | None  # Spearman of predicted vs actual targets on masks outside the fit
    lds_method: str  # "cross_validation" | "held_out"
    design: str  # "exhaustive" | "random" | "adaptive"
    random_masks: int  # masks scored for the fit
    held_out_masks: int  # extra masks scored only to evaluate (0 when exhaustive or adaptive)
    reused_samples: int  # passes made by other methods that joined the fit
    stopped_early: bool
    interval: np.ndarray | None  # [n, 2] bootstrap 2.5% and 97.5% of each weight
    banzhaf: np.ndarray | None = None  # [n] exact Banzhaf value of log p(response), nats (exhaustive only)
    banzhaf_range: np.ndarray | None = None  # [n, 2] min and max of the marginal change over contexts


@dataclass(frozen=True)
class AdaptivePolicy:
    """``min_masks`` was chosen by replaying recorded HotpotQA samples (``benchmarks/stopping_rules.py``): at 16 the
    fit's LDS fell below the fixed-64 fit's. With ContextCite's own target (the peer-exact benchmark, 20 HotpotQA and
    20 MuSiQue cases) it is within 0.005 of the fixed-64 fit's LDS (0.843 vs 0.845, 0.849 vs 0.854) at a median of
    32 random masks, which is why it became the default (``num_ablations: null``)."""

    max_masks: int = 64
    min_masks: int = 32
    batch: int = 8
    top_k: int = 2
    tolerance: float = 0.2


def plan_design(num_sources: int, budget: int | None) -> str:
    """``exhaustive`` when all 2^n masks fit the budget (``None``: the adaptive policy's cap), else random."""
    cap = AdaptivePolicy().max_masks if budget is None else budget
    if 2**num_sources <= cap:
        return "exhaustive"
    return "adaptive" if budget is None else "random"


def planned_passes(num_sources: int, budget: int | None) -> int:
    design = plan_design(num_sources, budget)
    if design == "exhaustive":
        return 2**num_sources
    if design == "adaptive":
        return AdaptivePolicy().max_masks
    return budget


def run_ablation(score: Scorer, num_sources: int, budget: int | None, **kw) -> AblationResult:
    """The design ``plan_design`` picks; ``kw``: keep_probability, seed, solver, tokens, reused_* (adaptive)."""
    design = plan_design(num_sources, budget)
    reused = {k: kw.pop(k) for k in ("reused_masks", "reused_logprobs") if k in kw}
    if design == "exhaustive":
        kw.pop("keep_probability", None)
        return exhaustive_ablation(score, num_sources, **kw)
    if design == "adaptive":
        return adaptive_ablation(score, num_sources, **kw, **reused)
    return fixed_ablation(score, num_sources, budget, **kw)


def exhaustive_ablation(
    score: Scorer, num_sources: int, *, seed: int, solver: SurrogateSolver, tokens: int
) -> AblationResult:
    masks = interventions.exhaustive_masks(num_sources)
    logprobs = np.asarray(score(masks), dtype=np.float64)
    targets = sequence_logit(logprobs)
    banzhaf, ranges = banzhaf_values(masks, logprobs)
    return AblationResult(
        surrogate=fit_surrogate(masks, targets, solver=solver, tokens=tokens),
        lds=cross_validated_lds(masks, targets, solver=solver, tokens=tokens, seed=seed),
        lds_method="cross_validation",
        design="exhaustive",
        random_masks=len(masks),
        held_out_masks=0,
        reused_samples=0,
        stopped_early=False,
        interval=bootstrap_interval(masks, targets, solver=solver, tokens=tokens, seed=seed),
        banzhaf=banzhaf,
        banzhaf_range=ranges,
    )


def fixed_ablation(
    score: Scorer,
    num_sources: int,
    count: int,
    *,
    keep_probability: float,
    seed: int,
    solver: SurrogateSolver,
    tokens: int,
) -> AblationResult:
    fit_masks = interventions.distinct_keep_masks(num_sources, count, keep_probability=keep_probability, seed=seed)
    targets = sequence_logit(score(fit_masks))
    return AblationResult(
        surrogate=fit_surrogate(fit_masks, targets, solver=solver, tokens=tokens),
        lds=cross_validated_lds(fit_masks, targets, solver=solver, tokens=tokens, seed=seed),
        lds_method="cross_validation",
        design="random",
        random_masks=len(fit_masks),
        held_out_masks=0,
        reused_samples=0,
        stopped_early=False,
        interval=bootstrap_interval(fit_masks, targets, solver=solver, tokens=tokens, seed=seed),
    )


def assert_disjoint(fit_masks: np.ndarray, held_masks: np.ndarray) -> None:
    """No evaluation mask may be in the fit set: an in-sample LDS would overstate the fit."""
    fit = {m.tobytes() for m in fit_masks}
    if any(m.tobytes() in fit for m in held_masks):
        raise AssertionError("an LDS evaluation mask is in the surrogate's fit set")


def is_stable(previous: np.ndarray, current: np.ndarray, *, top_k: int, tolerance: float) -> bool:
    """Same top-k sources (as a set) and ||current - previous|| <= tolerance * ||current||."""
    k = min(top_k, len(current))
    same_top = set(_top(previous, k)) == set(_top(current, k))
    norm = float(np.linalg.norm(current))
    change = float(np.linalg.norm(current - previous))
    return same_top and change <= tolerance * max(norm, 1e-9)


def adaptive_ablation(
    score: Scorer,
    num_sources: int,
    *,
    keep_probability: float,
    seed: int,
    solver: SurrogateSolver,
    tokens: int,
    reused_masks: np.ndarray | None = None,  # [r, n] bool, passes already made
    reused_logprobs: np.ndarray | None = None,  # [r] nats
    policy: AdaptivePolicy = AdaptivePolicy(),
) -> AblationResult:
    pool = interventions.distinct_keep_masks(
        num_sources, policy.max_masks, keep_probability=keep_probability, seed=seed
    )
    x = np.zeros((0, num_sources), dtype=bool) if reused_masks is None else np.asarray(reused_masks, dtype=bool)
    y = np.zeros(0) if reused_logprobs is None else sequence_logit(reused_logprobs).reshape(-1)
    reused = len(y)

    def fit(x: np.ndarray, y: np.ndarray) -> Surrogate:
        return fit_surrogate(x, y, solver=solver, tokens=tokens)

    surrogate: Surrogate | None = fit(x, y) if reused >= 2 else None
    predicted: list[np.ndarray] = []
    actual: list[np.ndarray] = []
    used, stopped = 0, False
    while used < len(pool):
        masks = pool[used : used + policy.batch]
        targets = sequence_logit(score(masks))
        if surrogate is not None:  # held out: predicted before this batch joins the fit
            predicted.append(surrogate.predict(masks))
            actual.append(targets)
        previous = surrogate
        x, y = np.concatenate([x, masks]), np.concatenate([y, targets])
        used += len(masks)
        surrogate = fit(x, y)
        if (
            used >= policy.min_masks
            and previous is not None
            and is_stable(previous.weights, surrogate.weights, top_k=policy.top_k, tolerance=policy.tolerance)
        ):
            stopped = used < policy.max_masks
            break
    assert surrogate is not None  # the pool holds at least one mask
    return AblationResult(
        surrogate=surrogate,
        lds=spearman(np.concatenate(predicted), np.concatenate(actual)) if predicted else None,
        lds_method="held_out",
        design="adaptive",
        random_masks=used,
        held_out_masks=0,
        reused_samples=reused,
        stopped_early=stopped,
        interval=bootstrap_interval(x, y, solver=solver, tokens=tokens, seed=seed),
    )


def banzhaf_values(masks: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact Banzhaf values over a complete set of 2^n masks: per source the mean of v(S + i) - v(S) over all S
    without i, and the [min, max] of that change. Any row order; every mask must be present once."""
    n = masks.shape[1]
    codes = masks.astype(np.int64) @ (1 << np.arange(n))
    by_code = np.empty(2**n)
    by_code[codes] = values
    means, ranges = np.empty(n), np.empty((n, 2))
    for i in range(n):
        without = np.array([c for c in range(2**n) if not c >> i & 1])
        change = by_code[without | 1 << i] - by_code[without]
        means[i], ranges[i] = change.mean(), (change.min(), change.max())
    return means, ranges


def cross_validated_lds(
    masks: np.ndarray, targets: np.ndarray, *, solver: SurrogateSolver, tokens: int, seed: int, folds: int = CV_FOLDS
) -> float | None:
    """Spearman of out-of-fold predictions against the targets: each fold predicted by a fit on the others."""
    order = np.random.default_rng(seed).permutation(len(masks))
    predicted = np.empty(len(masks))
    for fold in np.array_split(order, folds):
        if len(fold) == 0:
            continue
        rest = np.setdiff1d(order, fold)
        assert_disjoint(masks[rest], masks[fold])
        fit = fit_surrogate(masks[rest], targets[rest], solver=solver, tokens=tokens)
        predicted[fold] = fit.predict(masks[fold])
    return spearman(predicted, targets)


def bootstrap_interval(
    masks: np.ndarray,
    targets: np.ndarray,
    *,
    solver: SurrogateSolver,
    tokens: int,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> np.ndarray | None:
    """[n, 2]: the 2.5th and 97.5th percentiles of each weight over fits to masks resampled with replacement."""
    if len(masks) < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, masks.shape[1]))
    for b in range(resamples):
        rows = rng.integers(0, len(masks), len(masks))
        draws[b] = fit_surrogate(masks[rows], targets[rows], solver=solver, tokens=tokens).weights
    return np.percentile(draws, [2.5, 97.5], axis=0).T


def _top(weights: np.ndarray, k: int) -> list[int]:
    return sorted(range(len(weights)), key=lambda i: (-weights[i], i))[:k]
