"""Reliance estimates: leave-one-out deltas and ContextCite's sparse linear surrogate over context ablations.

The surrogate is ContextCite 0.0.4's, computed as its code computes it (``context_cite/utils.py``
``aggregate_logit_probs`` and ``context_cite/solver.py`` ``LassoRegression.fit``): the target is the logit of the
whole response's probability, log p - log(1 - p) (``sequence_logit``); the Lasso (alpha 0.01, standardised masks,
an intercept) is fit to that target divided by the number of response tokens, and the weights and bias are
multiplied back. Weights are therefore in the target's units: nats of log-odds of the whole response, per source
kept. ``tests/test_surrogate_peer.py`` holds this equal to the peer's recorded outputs. The solver is a strategy:
anything with ``fit(masks, targets, num_output_tokens) -> (weights, bias)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np

_MAX_LOGPROB = float(np.log1p(-1e-7))  # p <= 1 - 1e-7: a near-certain response keeps a finite logit


def leave_one_out_reliance(full_logprob: float, without: np.ndarray) -> np.ndarray:
    """reliance_i = log p(resp | full) - log p(resp | without i), nats; positive = the answer needs source i."""
    return full_logprob - without


def sequence_logit(logprobs: np.ndarray | float) -> np.ndarray:
    """ContextCite's regression target from the response's total log-probability: log p - log(1 - p)."""
    lp = np.minimum(np.asarray(logprobs, dtype=np.float64), _MAX_LOGPROB)
    return lp - np.log(-np.expm1(lp))


class SurrogateSolver(Protocol):
    def fit(self, masks: np.ndarray, targets: np.ndarray, num_output_tokens: int) -> tuple[np.ndarray, float]: ...


@dataclass(frozen=True)
class LassoSolver:
    """``context_cite.solver.LassoRegression``: StandardScaler + Lasso(alpha, random_state=0) on target / tokens."""

    alpha: float = 0.01

    def fit(self, masks: np.ndarray, targets: np.ndarray, num_output_tokens: int) -> tuple[np.ndarray, float]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import Lasso
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
        lasso = Lasso(alpha=self.alpha, random_state=0, fit_intercept=True)
        with warnings.catch_warnings():  # the peer's iteration cap, kept; its warning is not news per fit
            warnings.simplefilter("ignore", ConvergenceWarning)
            make_pipeline(scaler, lasso).fit(masks.astype(np.float32), np.asarray(targets) / num_output_tokens)
        weights = lasso.coef_ / scaler.scale_
        bias = lasso.intercept_ - (scaler.mean_ / scaler.scale_) @ lasso.coef_.T
        return np.asarray(weights, dtype=np.float64) * num_output_tokens, float(bias) * num_output_tokens


@dataclass(frozen=True)
class Surrogate:
    weights: np.ndarray  # [n] effect of keeping each source, nats of log-odds of the whole response
    bias: float

    def predict(self, masks: np.ndarray) -> np.ndarray:
        return masks.astype(np.float64) @ self.weights + self.bias


def fit_surrogate(masks: np.ndarray, targets: np.ndarray, *, solver: SurrogateSolver, tokens: int) -> Surrogate:
    weights, bias = solver.fit(masks, targets, tokens)
    return Surrogate(weights=np.asarray(weights, dtype=np.float64), bias=float(bias))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation; None when undefined (fewer than 2 values or a constant side)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return None if np.isnan(value) else float(value)
