"""Reliance estimates: leave-one-out deltas and a sparse linear surrogate over random ablations.

The surrogate follows ContextCite: masks are standardised, a Lasso is fit on the response's logit-probability,
and the weights are reported back on the unstandardised 0/1 scale (the effect of keeping the source). The solver is
a strategy: anything with ``fit(masks, targets) -> (weights, bias)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


def leave_one_out_reliance(full_logprob: float, without: np.ndarray) -> np.ndarray:
    """reliance_i = log p(resp | full) - log p(resp | without i), nats; positive = the answer needs source i."""
    return full_logprob - without


class SurrogateSolver(Protocol):
    def fit(self, masks: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float]: ...


@dataclass(frozen=True)
class LassoSolver:
    alpha: float = 0.01

    def fit(self, masks: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float]:
        from sklearn.linear_model import Lasso

        x = masks.astype(np.float64)  # [m, n]
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        lasso = Lasso(alpha=self.alpha, random_state=0, max_iter=10_000)
        lasso.fit((x - mean) / scale, targets)
        weights = lasso.coef_ / scale
        bias = float(lasso.intercept_ - np.sum(weights * mean))
        return weights, bias


@dataclass(frozen=True)
class Surrogate:
    weights: np.ndarray  # [n] effect of keeping each source, in the target's units
    bias: float

    def predict(self, masks: np.ndarray) -> np.ndarray:
        return masks.astype(np.float64) @ self.weights + self.bias


def fit_surrogate(masks: np.ndarray, targets: np.ndarray, *, solver: SurrogateSolver) -> Surrogate:
    weights, bias = solver.fit(masks, targets)
    return Surrogate(weights=np.asarray(weights, dtype=np.float64), bias=float(bias))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation; None when undefined (fewer than 2 values or a constant side)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return None if np.isnan(value) else float(value)
