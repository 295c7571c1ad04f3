"""Context-ablation levers replayed offline on the recorded samples of the peer-exact benchmark (no model, seconds).

From each case of ``results/{hotpotqa,musique}_peer_exact.cases.jsonl`` (64 distinct fit masks of seed 0, their
log-probs, the leave-one-out and no-context log-probs, 32 shared evaluation masks disjoint from the fit):

- **How well is the fixed-64 fit's LDS estimated** without scoring 16 extra held-out masks? The 4-fold
  cross-validated LDS over the 64 fit masks (no extra pass) against a 16-mask held-out estimate (the first 16
  evaluation masks), each compared with the LDS on the other 16 evaluation masks (an independent reference):
  the mean absolute error of each estimate.
- **Leave-one-out and no-context passes joining the fit**: the LDS on the 32 evaluation masks of a fit on the
  first k random masks plus those 11 reused passes, for k in 32..64, beside the fixed-64 fit and ContextCite.
- **Recall@2 of each of those fits** (the two largest weights against the gold paragraphs), beside ContextCite's,
  the adaptive fit's (``context_ablation_adaptive``, as the default audit reports it) and leave-one-out's: how many
  masks the surrogate needs to find the gold paragraphs as often as ContextCite does.

    PYTHONPATH=. python benchmarks/ablation_levers.py --json benchmarks/results/ablation_levers.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from faithaudit.audits import interventions
from faithaudit.audits.ablation import cross_validated_lds
from faithaudit.audits.reliance import LassoSolver, fit_surrogate, sequence_logit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_contextcite import lds, recall_at_k  # noqa: E402  the benchmark's own metrics

RESULTS = Path(__file__).resolve().parent / "results"
EVAL_SEED = 7_000_003  # compare_contextcite.EVAL_SEED
KS = (32, 40, 48, 53, 64)
RECORDED = {"contextcite": "contextcite", "adaptive": "context_ablation_adaptive", "leave_one_out": "leave_one_out"}
SOLVER = LassoSolver(0.01)


def recall_at_2(scores, gold: list[int]) -> float:
    return recall_at_k(np.asarray(scores, dtype=np.float64), gold, 2)


def replay_case(record: dict) -> dict[str, float | None]:
    s, n, tokens = record["samples"], record["num_sources"], record["response_tokens"]
    fit = interventions.distinct_keep_masks(n, 64, keep_probability=0.5, seed=0)
    evals = interventions.distinct_keep_masks(n, 32, keep_probability=0.5, seed=EVAL_SEED, exclude=fit)
    fit_lp, eval_lp = np.array(s["fit_logprobs"]), np.array(s["eval_logprobs"])
    reused_masks = np.vstack([interventions.leave_one_out_masks(n), interventions.no_context_mask(n)])
    reused_lp = np.array([*s["loo_logprobs"], s["no_context_logprob"]])
    weights = fit_surrogate(fit, sequence_logit(fit_lp), solver=SOLVER, tokens=tokens).weights
    recall = {name: recall_at_2(record["methods"][key]["scores"], record["gold"]) for name, key in RECORDED.items()}
    recall["fixed64"] = recall_at_2(weights, record["gold"])
    out = {
        "contextcite": record["methods"]["contextcite"]["lds"],
        "fixed64": lds(weights, evals, eval_lp),
        "reference_16": lds(weights, evals[16:], eval_lp[16:]),
        "held_out_16_estimate": lds(weights, evals[:16], eval_lp[:16]),
        "cross_validation_estimate": cross_validated_lds(
            fit, sequence_logit(fit_lp), solver=SOLVER, tokens=tokens, seed=0
        ),
    }
    for k in KS:
        masks = np.vstack([fit[:k], reused_masks])
        targets = sequence_logit(np.concatenate([fit_lp[:k], reused_lp]))
        fitted = fit_surrogate(masks, targets, solver=SOLVER, tokens=tokens).weights
        out[f"reuse_plus_{k}"] = lds(fitted, evals, eval_lp)
        recall[f"reuse_plus_{k}"] = recall_at_2(fitted, record["gold"])
    return out | {"recall_at_2": recall}


def summarize(rows: list[dict]) -> dict:
    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows if r[key] is not None]))

    def error(key: str) -> float:
        return float(
            np.mean([abs(r[key] - r["reference_16"]) for r in rows if None not in (r[key], r["reference_16"])])
        )

    lds_keys = [k for k in rows[0] if not k.endswith("estimate") and k not in ("reference_16", "recall_at_2")]
    return {
        "cases": len(rows),
        "lds_mean": {k: mean(k) for k in lds_keys},
        "recall_at_2_mean": {k: float(np.mean([r["recall_at_2"][k] for r in rows])) for k in rows[0]["recall_at_2"]},
        "lds_estimate_abs_error": {
            "held_out_16": error("held_out_16_estimate"),
            "cross_validation": error("cross_validation_estimate"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result = {}
    for dataset in ("hotpotqa", "musique"):
        path = RESULTS / f"{dataset}_peer_exact.cases.jsonl"
        rows = [replay_case(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
        result[dataset] = summarize(rows)
        print(dataset, json.dumps(result[dataset], indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
