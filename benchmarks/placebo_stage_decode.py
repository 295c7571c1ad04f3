"""The placebo stage of the default audit with its flip check, decoding undecided answers 8 rows per batch against
one row at a time (``DECODE_ROWS``), on one benchmark case, side by side in one process (the arms alternate), plus
the stage's scoring alone, once: what batching the decoding saves on the whole stage.

    PYTHONPATH=. .venv/bin/python benchmarks/placebo_stage_decode.py --dataset hotpotqa --case 0 --threads 1 \\
        --json benchmarks/results/placebo_stage_decode.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import compare_contextcite as cc  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import torch

    from faithaudit.audits import decoding
    from faithaudit.audits.context import StageContext
    from faithaudit.audits.meter import ProgressTracker
    from faithaudit.audits.model.registry import load_model
    from faithaudit.audits.placebos import placebo_prompts
    from faithaudit.audits.prompt.layout import request_layout
    from faithaudit.audits.scoring import score_full_context, score_pairs
    from faithaudit.audits.stages import flips
    from faithaudit.config import get_settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["hotpotqa", "musique"], default="hotpotqa")
    p.add_argument("--case", type=int, default=0)
    p.add_argument("--max-docs", type=int, default=None)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(None, get_settings())
    case = cc.load_cases(args.dataset, cc.default_data_dir(), args.case + 1, args.max_docs)[args.case]
    request = cc.audit_request(case, default=True)
    layout, given, _ = request_layout(request, model)
    ids = model.encode(given)
    base = score_full_context(model, layout, ids, with_attention=True)
    stages = frozenset({"answer_flip", "placebos"})
    ctx = StageContext(request, model, layout, given, ids, base, ProgressTracker(1, None), stages=stages)
    gate = flips.answer_gate(ctx)
    _, prompts = placebo_prompts(layout, model, request.query, request.audit.placebos, seed=request.audit.seed)
    pairs = [(prompt, ids) for prompt in prompts]
    seconds: dict[int, list[float]] = {8: [], 1: []}
    verdicts = {}
    for r in range(args.rounds):
        for rows in [8, 1] if r % 2 == 0 else [1, 8]:
            flips.DECODE_ROWS = decoding.DECODE_ROWS = rows
            t0 = time.perf_counter()
            _, keeps = flips.score_then_check(model, pairs, gate, reuse=base.cache)
            seconds[rows].append(round(time.perf_counter() - t0, 2))
            verdicts[rows] = keeps
            print(f"round {r} rows {rows}: {seconds[rows][-1]} s", flush=True)
    t0 = time.perf_counter()
    score_pairs(model, pairs, base=base)
    scoring = round(time.perf_counter() - t0, 2)
    batched, single = statistics.median(seconds[8]), statistics.median(seconds[1])
    out = {
        "command": " ".join(sys.argv),
        "case": case.id,
        "margin_holds": gate.margin_holds,
        "budget": gate.budget,
        "placebos": len(pairs),
        "seconds_batched_8": seconds[8],
        "seconds_one_row": seconds[1],
        "seconds_scoring_only_once": scoring,  # one run, after the others: read it to about +-10%
        "stage_ratio_batched_vs_one_row": round(batched / single, 3),
        "verdicts_equal": verdicts[8] == verdicts[1],
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
