"""Choose ``labels.decisive`` on dev cases, never on the test cases it is then reported on.

Reads calibration rows (``calibration.py --skip 20 ...``: HotpotQA and MuSiQue cases after the 20 test cases),
re-decides ``decisive`` at each threshold of a grid (``calibration.decisive_at``: exact, since flips set no label
on these rows) and picks, on the pooled dev cases, the threshold that finds a decisive gold paragraph in the most
cases while decisive labels keep a precision on gold paragraphs >= 0.9; among equals, the highest (the most
conservative). Precision is the constraint because a wrong ``decisive`` is the overclaim this product exists to
avoid; the share of cases with a decisive gold paragraph is then made as large as the dev cases allow. Whether
that share also reaches issue 12's 0.80 on dev is reported beside it (``dev_meets_target``).

    PYTHONPATH=. python benchmarks/choose_decisive.py benchmarks/results/calibration_dev_*.jsonl \\
        --json benchmarks/results/decisive_threshold.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import relabelled, summarise  # noqa: E402

GRID = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0]


def sweep(rows: list[dict]) -> list[dict]:
    out = []
    for t in GRID:
        s = summarise("dev", relabelled(rows, t))
        out.append({"threshold": t, **{k: s[k] for k in ("decisive_labels", "decisive_precision_on_gold",
                                                         "cases_with_a_decisive_gold_share", "accepted")}})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", type=Path, help="Calibration .jsonl files of dev cases.")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = [json.loads(line) for path in args.rows for line in path.read_text().splitlines() if line.strip()]
    table = sweep(rows)
    precise = [r for r in table if (r["decisive_precision_on_gold"] or 0) >= 0.9]
    best = max(precise, key=lambda r: (r["cases_with_a_decisive_gold_share"], r["threshold"]), default=None)
    result = {
        "dev_cases": len(rows),
        "dev_files": [str(p) for p in args.rows],
        "sweep": table,
        "chosen_decisive_nats": best["threshold"] if best else None,
        "dev_meets_target": bool(best and best["accepted"]),
        "rule": "on dev: the most cases with a decisive gold paragraph while precision >= 0.9; ties: the highest",
        "command": " ".join(["benchmarks/choose_decisive.py", *(argv or sys.argv[1:])]),
    }
    for r in table:
        share, ok = r["cases_with_a_decisive_gold_share"], "ok" if r["accepted"] else ""
        print(f"{r['threshold']:5.2f}  labels {r['decisive_labels']:3d}  precision {r['decisive_precision_on_gold']}"
              f"  gold-decisive share {share:.2f}  {ok}")  # fmt: skip
    print(f"chosen labels.decisive: {result['chosen_decisive_nats']} ({len(rows)} dev cases; "
          f"meets issue 12's targets on dev: {result['dev_meets_target']})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
