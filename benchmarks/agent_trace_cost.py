"""The default audit of the tau-bench run of ``make agent-demo``, stage by stage, from reports of several code
versions: passes, tokens fed and seconds per stage (``report.cost.by_stage``), and each version's totals as a
ratio of the first one's.

Each report is the CLI's audit of the same request, one torch thread per process, e.g. for the code at a commit
checked out in a git worktree:

    .venv/bin/faithaudit trace tau-bench ../shared/data/benchmarks/tau_bench_airline_gpt4o_traces.jsonl \\
        --run tau-airline-gpt4o-task0-trial0 --max-prompt-tokens 3000 --audit-last 3 --keep-last-turns 2 \\
        --out /tmp/tau/tau0_request.json
    (cd WORKTREE && FAITHAUDIT_TORCH_THREADS=1 PYTHONPATH=. faithaudit audit /tmp/tau/tau0_request.json \\
        --json /tmp/tau/tau0_NAME.json)
    PYTHONPATH=. python benchmarks/agent_trace_cost.py base=/tmp/tau/tau0_base.json now=/tmp/tau/tau0_now.json \\
        --json benchmarks/results/agent_trace_cost.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(spec: str) -> tuple[str, dict]:
    name, _, path = spec.partition("=")
    report = json.loads(Path(path).read_text())
    return name, {
        "labels": {s["id"]: s["label"] for s in report["sources"]},
        "total": {k: report["cost"][k] for k in ("forward_passes", "tokens_processed", "seconds")},
        "by_stage": report["cost"]["by_stage"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="NAME=report.json, the first one the baseline")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--note", default="", help="how the reports were produced (kept in the JSON)")
    args = parser.parse_args(argv)
    runs = dict(load(spec) for spec in args.reports)
    names = list(runs)
    stages = sorted(
        {s for r in runs.values() for s in r["by_stage"]},
        key=lambda s: -runs[names[-1]]["by_stage"].get(s, {}).get("seconds", 0),
    )
    print(f"{'stage':22s}" + "".join(f"{n + ' passes/tokens/s':>34s}" for n in names))
    for stage in stages:
        cells = []
        for n in names:
            c = runs[n]["by_stage"].get(stage)
            cells.append("-" if c is None else f"{c['forward_passes']}/{c['tokens_processed']}/{c['seconds']:.1f}")
        print(f"{stage:22s}" + "".join(f"{cell:>34s}" for cell in cells))
    base = runs[names[0]]["total"]
    ratios = {
        n: {k: round(r["total"][k] / base[k], 3) for k in ("forward_passes", "tokens_processed", "seconds")}
        for n, r in runs.items()
    }
    for n in names:
        t = runs[n]["total"]
        print(f"{n}: {t['forward_passes']} passes, {t['tokens_processed']} tokens, {t['seconds']:.1f} s; "
              f"vs {names[0]}: {ratios[n]}")  # fmt: skip
    same_labels = all(runs[n]["labels"] == runs[names[0]]["labels"] for n in names)
    print(f"labels equal across versions: {same_labels}")
    if args.json:
        out = {"note": args.note, "command": " ".join(sys.argv), "runs": runs, "ratios_vs_first": ratios}
        out["labels_equal"] = same_labels
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
