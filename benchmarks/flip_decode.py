"""The answer-flip check's greedy decoding, one answer at a time against ``DECODE_ROWS`` answers per batch, measured
side by side in one run on the same prompts and caches.

For each case (the default request a user sends: the benchmark's gold answer as the response), the rows are what
the flip check decodes when nothing can be read off a pass: the 16 placebo prompts, each from its own scored
pass's KV cache (``stages.flips.score_then_check``), and the leave-one-out prompts of the first
``answer_flip_top_k`` sources from the full context's cache (``answer_flip``), each decoded to the flip budget
(``stages.flips.answer_gate``). The passes that build those caches are not timed; the two arms alternate which
goes first. Each arm's tokens must be equal, row for row; the table gives the median seconds and their ratio.

    PYTHONPATH=. python benchmarks/flip_decode.py --dataset hotpotqa --limit 6 --threads 1 \\
        --json benchmarks/results/flip_decode_hotpotqa.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import compare_contextcite as cc  # noqa: E402


def case_rows(model, case):
    """(prompts, caches, budget) of one case's flip decoding."""
    from faithaudit.audits.context import StageContext
    from faithaudit.audits.meter import ProgressTracker
    from faithaudit.audits.placebos import placebo_prompts
    from faithaudit.audits.prompt.layout import request_layout
    from faithaudit.audits.scoring import score_full_context
    from faithaudit.audits.stages.flips import answer_gate

    request = cc.audit_request(case, default=True)
    layout, given, _ = request_layout(request, model)
    response_ids = model.encode(given)
    base = score_full_context(model, layout, response_ids, with_attention=False)
    ctx = StageContext(request, model, layout, given, response_ids, base, ProgressTracker(1, None))
    gate = answer_gate(ctx)
    opts = request.audit
    _, placebos = placebo_prompts(layout, model, request.query, opts.placebos, seed=opts.seed)
    caches = [model.score(p, response_ids, reuse=base.cache, keep_cache=True)[1] for p in placebos]
    loo = [layout.without(i).ids for i in range(min(opts.answer_flip_top_k, layout.num_sources))]
    return list(placebos) + loo, caches + [base.cache] * len(loo), gate.budget


def one_at_a_time(model, prompts, caches, budget):
    return [model.generate(p, max_new_tokens=budget, reuse=c) for p, c in zip(prompts, caches, strict=True)]


def batched(model, prompts, caches, budget):
    from faithaudit.audits.decoding import DECODE_ROWS

    out = []
    for start in range(0, len(prompts), DECODE_ROWS):
        rows = slice(start, start + DECODE_ROWS)
        out.extend(model.generate_batch(prompts[rows], max_new_tokens=budget, reuses=caches[rows]))
    return out


def timed(model, arm, *args):
    passes, tokens = model.counter.snapshot()
    t0 = time.perf_counter()
    out = arm(model, *args)
    seconds = time.perf_counter() - t0
    p, t = model.counter.snapshot()
    return out, {"seconds": round(seconds, 3), "forward_passes": p - passes, "tokens_processed": t - tokens}


def run_case(model, case, index: int) -> dict:
    prompts, caches, budget = case_rows(model, case)
    arms = [("one_at_a_time", one_at_a_time), ("batched", batched)]
    if index % 2:
        arms.reverse()
    record: dict = {"case": case.id, "rows": len(prompts), "budget": budget}
    outputs = {}
    for name, arm in arms:
        outputs[name], record[name] = timed(model, arm, prompts, caches, budget)
    record["tokens_equal"] = outputs["batched"] == outputs["one_at_a_time"]
    record["decoded_tokens"] = sum(len(t) for t in outputs["one_at_a_time"])
    record["time_ratio_batched_vs_one_at_a_time"] = round(
        record["batched"]["seconds"] / record["one_at_a_time"]["seconds"], 3
    )
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(cc.FILES), default="hotpotqa")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from faithaudit.audits.decoding import DECODE_ROWS
    from faithaudit.audits.model.registry import load_model
    from faithaudit.config import get_settings

    torch.set_num_threads(args.threads)
    model = load_model(None, get_settings())
    cases = cc.load_cases(args.dataset, cc.default_data_dir(), args.limit, args.max_docs)
    records = []
    for index, case in enumerate(cases):
        records.append(run_case(model, case, index))
        print(json.dumps(records[-1]), flush=True)
    summary = {
        "command": " ".join(["benchmarks/flip_decode.py", *(argv if argv is not None else sys.argv[1:])]),
        "dataset": args.dataset,
        "cases": len(records),
        "decode_rows": DECODE_ROWS,
        "torch_threads": args.threads,
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "all_tokens_equal": all(r["tokens_equal"] for r in records),
        "median_seconds_one_at_a_time": statistics.median(r["one_at_a_time"]["seconds"] for r in records),
        "median_seconds_batched": statistics.median(r["batched"]["seconds"] for r in records),
        "median_time_ratio_batched_vs_one_at_a_time": statistics.median(
            r["time_ratio_batched_vs_one_at_a_time"] for r in records
        ),
        "records": records,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if summary["all_tokens_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
