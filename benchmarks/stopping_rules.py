"""Replay adaptive context-ablation policies offline on the samples a ContextCite comparison run recorded.

``compare_contextcite.py`` stores, per case, the log-probs of the fixed-64 distinct random masks (seed 0: the same
sequence an adaptive audit draws from), of the passes an audit reuses (full context, leave-one-out, no context) and
of the 32 shared evaluation masks. Records written before the surrogate became ContextCite's exact target (they
hold ``fit_logit_probs``, a per-token sum that cannot be converted) are skipped; ``results/stopping_rules.json``
was computed on them, with the earlier solver. That is everything ``faithaudit.audits.ablation`` sees, so any
stopping rule or solver can be scored here exactly, without the model: masks used (the cost), recall@k against the
gold paragraphs and LDS on the evaluation masks, side by side with the fixed-64 fit.

    python benchmarks/stopping_rules.py benchmarks/results/hotpotqa.cases.jsonl benchmarks/results/musique.cases.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from faithaudit.audits import ablation, interventions
from faithaudit.audits.reliance import LassoSolver, SurrogateSolver, fit_surrogate, sequence_logit, spearman

KS = (1, 2)


@dataclass(frozen=True)
class Case:
    id: str
    dataset: str
    gold: list[int]
    tokens: int  # response tokens (ContextCite's solver divides by them)
    fit_masks: np.ndarray  # [64, n]
    fit_targets: np.ndarray  # [64] log p(response), nats
    reused_masks: np.ndarray  # [n + 2, n]: full, leave-one-out, no context
    reused_targets: np.ndarray  # log p(response), nats
    eval_masks: np.ndarray  # [32, n]
    eval_logprobs: np.ndarray
    run_masks: int  # random masks the recorded audit scored
    audit_seconds: float  # its scoring time, and the part of it spent on random masks
    masks_seconds: float
    contextcite_seconds: float | None


@dataclass(frozen=True)
class Candidate:
    name: str
    policy: ablation.AdaptivePolicy | None  # None: fixed, all 64 masks, no reuse
    reuse: bool = True
    solver: Callable[[Case], SurrogateSolver] = lambda case: LassoSolver(0.01)


@dataclass(frozen=True)
class PriorLasso:
    """Lasso on the residual of a prior linear model: shrinks towards the prior instead of towards zero."""

    prior: np.ndarray
    alpha: float

    def fit(self, masks: np.ndarray, targets: np.ndarray, num_output_tokens: int) -> tuple[np.ndarray, float]:
        residual = targets - masks.astype(np.float64) @ self.prior
        delta, bias = LassoSolver(self.alpha).fit(masks, residual, num_output_tokens)
        return self.prior + delta, bias


def loo_prior(case: Case) -> np.ndarray:
    """Leave-one-out effects in the surrogate's units: logit(full) - logit(without i)."""
    n = case.fit_masks.shape[1]
    logits = sequence_logit(case.reused_targets)
    return logits[0] - logits[1 : n + 1]


def load(paths: Iterable[Path]) -> list[Case]:
    cases = []
    for path in paths:
        dataset = path.name.split(".")[0]
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            s = r.get("samples")
            if not s or "fit_logprobs" not in s:
                continue
            n = r["num_sources"]
            fit_targets = np.array(s["fit_logprobs"])
            eval_lp = np.array(s["eval_logprobs"])
            fit_masks = interventions.distinct_keep_masks(n, len(fit_targets), keep_probability=0.5, seed=s["fit_seed"])
            cases.append(
                Case(
                    id=r["id"],
                    dataset=dataset,
                    gold=r["gold"],
                    tokens=r["response_tokens"],
                    fit_masks=fit_masks,
                    fit_targets=fit_targets,
                    reused_masks=np.concatenate(
                        [
                            np.ones((1, n), dtype=bool),
                            interventions.leave_one_out_masks(n),
                            interventions.no_context_mask(n),
                        ]
                    ),
                    reused_targets=np.array([s["full_logprob"], *s["loo_logprobs"], s["no_context_logprob"]]),
                    eval_masks=interventions.distinct_keep_masks(
                        n, len(eval_lp), keep_probability=0.5, seed=s["eval_seed"], exclude=fit_masks
                    ),
                    eval_logprobs=eval_lp,
                    run_masks=r["adaptive_random_masks"],
                    audit_seconds=r["methods"]["faithaudit_full"]["seconds"],
                    masks_seconds=r["audit_by_stage"]["context_ablation"]["seconds"],
                    contextcite_seconds=r["methods"].get("contextcite", {}).get("seconds"),
                )
            )
    return cases


def run_candidate(case: Case, candidate: Candidate) -> tuple[np.ndarray, int]:
    """The surrogate weights the candidate ends with and the random masks it scored."""
    if candidate.policy is None:
        targets = sequence_logit(case.fit_targets)
        fit = fit_surrogate(case.fit_masks, targets, solver=candidate.solver(case), tokens=case.tokens)
        return fit.weights, len(case.fit_targets)
    position = 0

    def score(masks: np.ndarray) -> np.ndarray:  # the pool is the recorded sequence, consumed in order
        nonlocal position
        assert np.array_equal(masks, case.fit_masks[position : position + len(masks)])
        out = case.fit_targets[position : position + len(masks)]
        position += len(masks)
        return out

    result = ablation.adaptive_ablation(
        score,
        case.fit_masks.shape[1],
        keep_probability=0.5,
        seed=0,
        solver=candidate.solver(case),
        tokens=case.tokens,
        reused_masks=case.reused_masks if candidate.reuse else None,
        reused_logprobs=case.reused_targets if candidate.reuse else None,
        policy=candidate.policy,
    )
    return result.surrogate.weights, result.random_masks


def evaluate(case: Case, weights: np.ndarray) -> dict[str, float | None]:
    top = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
    out: dict[str, float | None] = {
        f"recall_at_{k}": len(set(top[:k]) & set(case.gold)) / min(k, len(case.gold)) for k in KS
    }
    out["lds"] = spearman(case.eval_masks.astype(np.float64) @ weights, case.eval_logprobs)
    return out


def estimated_ratio(case: Case, masks: int) -> float | None:
    """The audit's time with ``masks`` random masks (the recorded mask stage rescaled per mask) over ContextCite's."""
    if not case.contextcite_seconds:
        return None
    seconds = case.audit_seconds - case.masks_seconds + case.masks_seconds * masks / max(case.run_masks, 1)
    return seconds / case.contextcite_seconds


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def table(cases: list[Case], candidates: list[Candidate]) -> list[dict[str, Any]]:
    rows = []
    for candidate in candidates:
        per_case = []
        for case in cases:
            weights, masks = run_candidate(case, candidate)
            per_case.append({"masks": masks, "ratio": estimated_ratio(case, masks), **evaluate(case, weights)})
        lds = [r["lds"] for r in per_case]
        rows.append(
            {
                "candidate": candidate.name,
                "cases": len(cases),
                "masks_mean": float(np.mean([r["masks"] for r in per_case])),
                "masks_median": float(np.median([r["masks"] for r in per_case])),
                "recall_at_1": float(np.mean([r["recall_at_1"] for r in per_case])),
                "recall_at_2": float(np.mean([r["recall_at_2"] for r in per_case])),
                "lds": float(np.mean([v for v in lds if v is not None])),
                "estimated_time_ratio_median": _median([r["ratio"] for r in per_case]),
                "per_case_lds": lds,
                "per_case_masks": [r["masks"] for r in per_case],
            }
        )
    return rows


def default_candidates() -> list[Candidate]:
    base = ablation.AdaptivePolicy()
    out = [Candidate("fixed-64", None), Candidate(f"engine {base}", base)]
    for min_masks in (16, 24, 32):
        for tolerance in (0.2, 0.1, 0.05):
            out.append(
                Candidate(f"min {min_masks} tol {tolerance}", replace(base, min_masks=min_masks, tolerance=tolerance))
            )
    out.append(Candidate("min 16 tol 0.2, no reuse", base, reuse=False))
    for alpha in (0.01, 0.1, 0.3, 1.0):
        out.append(
            Candidate(f"fixed-64 loo prior a{alpha}", None, solver=lambda c, a=alpha: PriorLasso(loo_prior(c), a))
        )
        out.append(Candidate(f"engine loo prior a{alpha}", base, solver=lambda c, a=alpha: PriorLasso(loo_prior(c), a)))
    for alpha in (0.1, 0.3):
        out.append(Candidate(f"fixed-64 lasso a{alpha}", None, solver=lambda c, a=alpha: LassoSolver(a)))
        out.append(Candidate(f"engine lasso a{alpha}", base, solver=lambda c, a=alpha: LassoSolver(a)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", type=Path, help="OUT.cases.jsonl files written by compare_contextcite.py")
    p.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = p.parse_args(argv)
    cases = load(args.cases)
    if not cases:
        p.error("no case in these files has recorded samples")
    rows = []
    for dataset in sorted({c.dataset for c in cases}) + ["all"]:
        subset = [c for c in cases if dataset == c.dataset]
        if dataset == "all":  # a case recorded in two files (a tuning run and the final one) counts once
            subset = list({c.id: c for c in cases}.values())
        print(f"\n{dataset}: {len(subset)} cases with samples")
        print(f"{'candidate':<52} {'masks':>6} {'r@1':>6} {'r@2':>6} {'lds':>6} {'ratio~':>6}")
        for row in table(subset, default_candidates()):
            rows.append({"dataset": dataset, **row})
            print(
                f"{row['candidate'][:52]:<52} {row['masks_mean']:6.1f} {row['recall_at_1']:6.3f} "
                f"{row['recall_at_2']:6.3f} {row['lds']:6.3f} {row['estimated_time_ratio_median'] or float('nan'):6.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
