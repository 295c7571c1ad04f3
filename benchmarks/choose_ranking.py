"""Which ranking should a report lead with? Candidate rules chosen among on dev cases, then reported on test cases.

Leave-one-out reliance misses a source whose removal another source covers (a bridge paragraph beside one that
carries the answer alone); the surrogate, fit on masks that remove several sources at once, still sees it. The
candidates (``CLEARANCE``) rank first the sources whose leave-one-out reliance *clears* the noise, by reliance,
then the rest by surrogate weight; the rules differ in what clears:

  interval        the whole reliance interval >= max(labels.supporting, floor): the supporting or decisive labels
  reliance        the reliance itself > the noise floor
  surrogate_only  nothing: the surrogate's ranking (ContextCite's), the report's ``surrogate_rank``
  reliance_only   everything: leave-one-out's ranking, the report's ``reliance_rank``

The rows are ``compare_contextcite.py --default-audit-only --no-contextcite --no-eval`` records, which carry each
default audit's reliance, surrogate weights, reliance intervals and noise floor: ``--skip 20 --limit 10`` for dev
(cases 20-29, full default audits), ``--limit 20 --controls-only`` for test (cases 0-19: leave-one-out, placebos
and orders only; the surrogate of each case is that of its full default audit in ``--contextcite``'s records, whose
reliance must equal the controls run's). No model runs here.

The choice, fixed before any dev case was read: on the pooled dev cases, the highest mean recall@2 of the gold
paragraphs; ties, the higher recall@1; then the order of ``CLEARANCE``. On test, each rule's recall is given beside
ContextCite's on the same cases, with the paired difference (``paired_stats``).

    PYTHONPATH=. python benchmarks/choose_ranking.py \\
        --dev benchmarks/results/{hotpotqa,musique}_ranking_dev.cases.jsonl \\
        --test benchmarks/results/{hotpotqa,musique}_ranking_test.cases.jsonl \\
        --contextcite benchmarks/results/{hotpotqa,musique}_default_audit_20.cases.jsonl \\
        --json benchmarks/results/ranking_rule.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_contextcite import recall_at_k  # noqa: E402
from paired_stats import paired_difference  # noqa: E402

from faithaudit.api_schemas import LabelThresholds  # noqa: E402
from faithaudit.audits.report.labels import ranks_descending  # noqa: E402

KS = (1, 2)


@dataclass(frozen=True)
class Measured:
    """What a clearance rule may read of one source (nats; the floor is 0 without placebos)."""

    reliance: float
    interval: tuple[float, float]  # the reliance interval the labels read
    floor: float
    supporting: float  # labels.supporting, nats


Clearance = Callable[[Measured], bool]

CLEARANCE: dict[str, Clearance] = {
    "interval": lambda m: m.interval[0] >= max(m.supporting, m.floor),
    "reliance": lambda m: m.reliance > max(m.floor, 0.0),
    "surrogate_only": lambda m: False,
    "reliance_only": lambda m: True,
}


def ablation_ranks(
    reliance: Sequence[float], surrogate: Sequence[float], measured: Sequence[Measured], *, clears: Clearance
) -> list[int]:
    """1-based ranks: the sources that clear first, by reliance; the rest after them, by surrogate weight."""
    n = len(reliance)
    cleared = [clears(m) for m in measured]
    top = ranks_descending([reliance[i] if cleared[i] else None for i in range(n)])
    rest = ranks_descending([None if cleared[i] else surrogate[i] for i in range(n)])
    return [top[i] if cleared[i] else rest[i] + sum(cleared) for i in range(n)]


def read(paths: list[Path]) -> list[dict]:
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]
    missing = [r["id"] for r in rows if "default_audit_calibration" not in r]
    if missing:
        raise SystemExit(f"records without default_audit_calibration (re-run compare_contextcite.py): {missing[:3]}")
    return rows


def with_surrogate(rows: list[dict], full: dict[str, dict]) -> tuple[list[dict], float | None]:
    """Rows of ``--controls-only`` runs (leave-one-out, placebos and orders, no surrogate) take the surrogate of the
    full default audit of the same case from ``full``; the reliance of the two runs is the same measurement, and
    the largest difference between them is returned (nats)."""
    out, gap = [], None
    for r in rows:
        if "default_audit_surrogate" in r["methods"]:
            out.append(r)
            continue
        other = full[r["id"]]["methods"]
        a, b = np.asarray(r["methods"]["default_audit"]["scores"]), np.asarray(other["default_audit"]["scores"])
        gap = max(gap or 0.0, float(np.max(np.abs(a - b))))
        methods = r["methods"] | {"default_audit_surrogate": other["default_audit_surrogate"]}
        out.append(r | {"methods": methods})
    return out, gap


def scores(row: dict, rule: str) -> np.ndarray:
    """The rule's ranking as scores (higher first) for ``recall_at_k``."""
    reliance = row["methods"]["default_audit"]["scores"]
    surrogate = row["methods"]["default_audit_surrogate"]["scores"]
    cal = row["default_audit_calibration"]
    floor = cal["noise_floor_nats"] or 0.0
    supporting = LabelThresholds().supporting
    measured = [Measured(r, tuple(iv), floor, supporting) for r, iv in zip(reliance, cal["reliance_intervals"],
                                                                           strict=True)]  # fmt: skip
    ranks = ablation_ranks(reliance, surrogate, measured, clears=CLEARANCE[rule])
    return -np.asarray(ranks, dtype=np.float64)


def recalls(rows: list[dict], rule: str) -> dict[int, list[float]]:
    return {k: [recall_at_k(scores(r, rule), r["gold"], k) for r in rows] for k in KS}


def sweep(rows: list[dict]) -> list[dict]:
    out = []
    for rule in CLEARANCE:
        rec = recalls(rows, rule)
        out.append({"rule": rule, **{f"recall_at_{k}": float(np.mean(rec[k])) for k in KS}})
    return out


def choose(table: list[dict]) -> str:
    order = list(CLEARANCE)
    return max(table, key=lambda r: (r["recall_at_2"], r["recall_at_1"], -order.index(r["rule"])))["rule"]


def on_test(rows: list[dict], contextcite: dict[str, dict], rule: str) -> dict:
    by_dataset: dict[str, dict] = {}
    for name, group in _by_dataset(rows).items():
        rec = recalls(group, rule)
        cc = [contextcite.get(r["id"]) for r in group]
        entry = {"cases": len(group), **{f"recall_at_{k}": float(np.mean(rec[k])) for k in KS}}
        if all(c is not None for c in cc):
            cc_rec = [recall_at_k(np.asarray(c["scores"]), r["gold"], 2) for c, r in zip(cc, group, strict=True)]
            entry["contextcite_recall_at_2"] = float(np.mean(cc_rec))
            entry["minus_contextcite_recall_at_2"] = paired_difference(rec[2], cc_rec)
        by_dataset[name] = entry
    return by_dataset


def _by_dataset(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["_dataset"], []).append(r)
    return out


def load(paths: list[Path]) -> list[dict]:
    rows = []
    for p in paths:
        for r in read([p]):
            rows.append(r | {"_dataset": p.name.split("_")[0]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", nargs="+", type=Path, required=True)
    ap.add_argument("--test", nargs="+", type=Path, required=True)
    ap.add_argument("--contextcite", nargs="*", type=Path, default=[])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    dev, test = load(args.dev), load(args.test)
    if {r["id"] for r in dev} & {r["id"] for r in test}:
        raise SystemExit("dev and test share cases")
    full = {r["id"]: r for p in args.contextcite for line in p.read_text().splitlines() if line.strip()
            for r in [json.loads(line)]}  # fmt: skip
    cc = {i: r["methods"]["contextcite"] for i, r in full.items()}
    dev, dev_gap = with_surrogate(dev, full)
    test, test_gap = with_surrogate(test, full)
    table = sweep(dev)
    rule = choose(table)
    result = {
        "dev_cases": len(dev),
        "test_cases": len(test),
        "dev_sweep": table,
        "dev_by_dataset": {name: sweep(group) for name, group in _by_dataset(dev).items()},
        "chosen_rule": rule,
        "reliance_max_abs_difference_controls_only_vs_full_audit": {"dev": dev_gap, "test": test_gap},
        "test": {name: on_test(test, cc, name) for name in CLEARANCE},
        "rule": "on dev: the highest mean recall@2; ties: recall@1, then the order of CLEARANCE",
        "command": " ".join(["benchmarks/choose_ranking.py", *(argv or sys.argv[1:])]),
    }
    for r in table:
        print(f"dev  {r['rule']:<15} recall@1 {r['recall_at_1']:.3f}  recall@2 {r['recall_at_2']:.3f}")
    print(f"chosen: {rule} ({len(dev)} dev cases)")
    for name, per in result["test"].items():
        for ds, e in per.items():
            cc2 = e.get("contextcite_recall_at_2")
            tail = "" if cc2 is None else f"  ContextCite {cc2:.3f}"
            print(f"test {name:<15} {ds:<9} recall@1 {e['recall_at_1']:.3f}  recall@2 {e['recall_at_2']:.3f}{tail}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
