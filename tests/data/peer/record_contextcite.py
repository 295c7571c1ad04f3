"""Record ContextCite 0.0.4's own target and solver outputs on fixed inputs, for ``tests/test_surrogate_peer.py``.

Needs the bench extra (``make bench-setup``); ``make test`` only reads the JSON this writes:

    .venv/bin/python tests/data/peer/record_contextcite.py

Each case: keep-masks, token-level logit-probabilities of a response (the peer's per-token target), the peer's
sequence target (``context_cite.utils.aggregate_logit_probs``) and its ``LassoRegression(0.01).fit`` weights and
bias. The inputs come from a seeded generator; the masks are an exhaustive design (n = 4) and random ones (n = 10),
some with duplicates as ContextCite draws them.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
from context_cite.solver import LassoRegression
from context_cite.utils import aggregate_logit_probs

OUT = Path(__file__).with_name("contextcite_solver.json")


def case(name: str, masks: np.ndarray, tokens: int, rng: np.random.Generator) -> dict:
    n = masks.shape[1]
    effect = rng.normal(0.0, 1.5, size=n) * (rng.random(n) < 0.6)
    base = rng.normal(-0.4, 0.3, size=tokens)
    # per-token log-probs move with the kept sources, then become the peer's per-token logit-probabilities
    token_lp = np.minimum(base[None, :] + (masks.astype(float) @ effect)[:, None] / tokens - 0.5, -1e-3)
    token_logit = (token_lp - np.log(-np.expm1(token_lp))).astype(np.float32)
    outputs = aggregate_logit_probs(token_logit)
    weights, bias = LassoRegression(0.01).fit(masks, outputs, tokens)
    return {
        "name": name,
        "masks": masks.astype(int).tolist(),
        "token_logit_probs": token_logit.astype(float).tolist(),
        "num_output_tokens": tokens,
        "peer_targets": np.asarray(outputs, dtype=float).tolist(),
        "peer_weights": np.asarray(weights, dtype=float).tolist(),
        "peer_bias": float(np.asarray(bias).reshape(-1)[0]),
    }


def main() -> None:
    rng = np.random.default_rng(20261202)
    exhaustive = ((np.arange(16)[:, None] >> np.arange(4)[None, :]) & 1).astype(bool)
    cases = [
        case("exhaustive_n4_t3", exhaustive, 3, rng),
        case("random_n10_t7", rng.random((64, 10)) < 0.5, 7, rng),
        case("random_n10_t1", rng.random((32, 10)) < 0.5, 1, rng),
        case("random_n6_t12_duplicates", rng.random((48, 6)) < 0.5, 12, rng),
    ]
    data = {"context_cite_version": importlib.metadata.version("context_cite"), "cases": cases}
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
