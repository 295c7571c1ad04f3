"""The surrogate is ContextCite's: its target and its Lasso fit equal the peer's own outputs, recorded from
``context_cite`` 0.0.4 by ``tests/data/peer/record_contextcite.py`` (run unconditionally; no bench extra needed)."""

import json
from pathlib import Path

import numpy as np
import pytest

from faithaudit.audits.model.adapter import ResponseScore
from faithaudit.audits.reliance import LassoSolver, fit_surrogate, sequence_logit

RECORDED = json.loads((Path(__file__).parent / "data" / "peer" / "contextcite_solver.json").read_text())
CASES = {c["name"]: c for c in RECORDED["cases"]}


def _token_logprobs(case) -> np.ndarray:
    """Back from the peer's per-token logit-probabilities to log-probs (its aggregation applies logsigmoid)."""
    logits = np.asarray(case["token_logit_probs"], dtype=np.float64)
    return -np.logaddexp(0.0, -logits)


def test_recorded_with_the_peer_version_we_claim():
    assert RECORDED["context_cite_version"] == "0.0.4" and len(CASES) == 4


@pytest.mark.parametrize("name", sorted(CASES))
def test_target_equals_the_peers_aggregate_logit_probs(name):
    case = CASES[name]
    ours = sequence_logit(_token_logprobs(case).sum(axis=1))
    np.testing.assert_allclose(ours, case["peer_targets"], atol=1e-3, rtol=1e-4)
    score = ResponseScore(token_logprobs=_token_logprobs(case)[0])
    assert score.logit_prob == pytest.approx(case["peer_targets"][0], abs=1e-3, rel=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
def test_lasso_fit_equals_the_peers_weights_and_bias(name):
    case = CASES[name]
    masks = np.asarray(case["masks"], dtype=bool)
    tokens = case["num_output_tokens"]
    weights, bias = LassoSolver(0.01).fit(masks, np.asarray(case["peer_targets"]), tokens)
    np.testing.assert_allclose(weights, case["peer_weights"], atol=1e-3)
    assert bias == pytest.approx(case["peer_bias"], abs=1e-3)
    # and the whole path from per-token scores, as an audit runs it
    fit = fit_surrogate(
        masks, sequence_logit(_token_logprobs(case).sum(axis=1)), solver=LassoSolver(0.01), tokens=tokens
    )
    np.testing.assert_allclose(fit.weights, case["peer_weights"], atol=1e-3)


def test_dividing_by_the_response_length_matters():
    """A solver that skipped ContextCite's division (the old surrogate) is not within tolerance on a long response."""
    case = CASES["random_n10_t7"]
    masks = np.asarray(case["masks"], dtype=bool)
    undivided, _ = LassoSolver(0.01).fit(masks, np.asarray(case["peer_targets"]), 1)
    assert np.max(np.abs(undivided - np.asarray(case["peer_weights"]))) > 1e-2
