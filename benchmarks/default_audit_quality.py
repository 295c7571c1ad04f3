"""The default audit's ranking and surrogate quality on all 20 + 20 peer-exact cases, without running the audit again.

The default audit ranks sources by reliance (leave-one-out) and reports an adaptive surrogate (context ablation with
leave-one-out and no-context passes reused). ``compare_contextcite.py`` runs the same two computations on every
case as ``leave_one_out`` and ``context_ablation_adaptive`` (same model, prompt, response, mask seed). This script
checks that, on the cases both runs share, the default audit's scores equal those methods' (reliance within
``--tol`` nats, the surrogate's LDS exactly), and then reports recall and LDS over all the peer-exact cases, with
ContextCite's beside them. The time ratios stay those of the default-audit runs: they need the audit timed.

    PYTHONPATH=. .venv/bin/python benchmarks/default_audit_quality.py \\
        --json benchmarks/results/default_audit_quality.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired_stats import paired_difference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("hotpotqa", "musique")
RELIANCE, SURROGATE, PEER = "leave_one_out", "context_ablation_adaptive", "contextcite"


def read_cases(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def identity(timed: dict[str, dict], peer_exact: dict[str, dict], tol: float) -> dict:
    """Per shared case: the default audit's reliance against ``leave_one_out``'s scores (max abs difference) and its
    surrogate's LDS against ``context_ablation_adaptive``'s."""
    shared = [cid for cid in timed if cid in peer_exact]
    score_diff, lds_diff = [], []
    for cid in shared:
        mine, theirs = timed[cid]["methods"], peer_exact[cid]["methods"]
        pairs = zip(mine["default_audit"]["scores"], theirs[RELIANCE]["scores"], strict=True)
        score_diff.append(max(abs(a - b) for a, b in pairs))
        lds_diff.append(abs(mine["default_audit_surrogate"]["lds"] - theirs[SURROGATE]["lds"]))
    holds = bool(shared) and max(score_diff) <= tol and max(lds_diff) == 0.0
    return {
        "shared_cases": len(shared),
        "reliance_max_abs_diff_nats": max(score_diff, default=None),
        "surrogate_lds_max_abs_diff": max(lds_diff, default=None),
        "holds": holds,
    }


def quality(peer_exact: dict[str, dict]) -> dict:
    rows = list(peer_exact.values())

    def mean(method: str, key: str) -> float:
        return round(statistics.fmean(r["methods"][method][key] for r in rows), 4)

    out = {"cases": len(rows)}
    for name, method in (("default_audit_reliance", RELIANCE), ("default_audit_surrogate", SURROGATE), (PEER, PEER)):
        out[name] = {key: mean(method, key) for key in ("recall_at_1", "recall_at_2", "lds")}
    mine, peer = out["default_audit_surrogate"]["lds"], out[PEER]["lds"]
    out["lds_surrogate_minus_contextcite"] = round(mine - peer, 4)
    out["lds_within_0_01"] = mine >= peer - 0.01
    out["recall_at_2_reliance_at_least_contextcite"] = (
        out["default_audit_reliance"]["recall_at_2"] >= out[PEER]["recall_at_2"]
    )
    out["recall_at_2_surrogate_at_least_contextcite"] = (
        out["default_audit_surrogate"]["recall_at_2"] >= out[PEER]["recall_at_2"]
    )
    out["paired_vs_contextcite"] = paired(rows)
    return out


def paired(rows: list[dict]) -> dict:
    """Each measure of the default audit against ContextCite's on the same cases: the mean difference with a
    bootstrap interval over cases, and the sign test (``paired_stats.paired_difference``)."""

    def per_case(method: str, key: str) -> list[float | None]:
        return [r["methods"][method][key] for r in rows]

    return {
        f"{name}_{key}": paired_difference(per_case(method, key), per_case(PEER, key))
        for name, method, key in (
            ("reliance", RELIANCE, "recall_at_2"),
            ("surrogate", SURROGATE, "recall_at_2"),
            ("surrogate", SURROGATE, "lds"),
        )
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--tol", type=float, default=1e-4, help="nats: reliance equal within this (rounding in the JSONL)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    summary = {}
    for ds in DATASETS:
        peer_exact = read_cases(args.results / f"{ds}_peer_exact.cases.jsonl")
        timed = read_cases(args.results / f"{ds}_default_audit_batched.cases.jsonl")
        check = identity(timed, peer_exact, args.tol)
        summary[ds] = {"identity": check, **(quality(peer_exact) if check["holds"] else {})}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if all(s["identity"]["holds"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
