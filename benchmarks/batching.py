"""Batched scoring over a shared cached prefix against the sequential path, and bfloat16 against float32, measured
side by side in one run on one model.

The workload is the leave-one-out and random keep-masks of one 10-document case: the ``make bench`` HotpotQA
record when the data is here (``--data``), else a case built from this repository's own text (what the GPU check
uses). For each batch size, the masks are scored ``--repeats`` times, alternating the order of the sizes; the table
gives the median seconds, rows and real tokens per second, and the largest |log p| difference from batch size 1.
With ``--dtypes float32,bfloat16`` each dtype's model scores the same masks: the leave-one-out reliance of every
source in each, their largest difference, and whether the reliance ranks agree.

    PYTHONPATH=. python benchmarks/batching.py --sizes 1,2,4,8 --dtypes float32,bfloat16 \\
        --json benchmarks/results/batching_cpu.json
    PYTHONPATH=. python benchmarks/batching.py --model /path/to/llama --device cuda --sizes 1,8,32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

DEFAULT_DATA = REPO.parent / "shared" / "data" / "benchmarks" / "hotpotqa_dev_distractor.jsonl"
RANDOM_MASKS = 32


@dataclass(frozen=True)
class Workload:
    name: str
    request: object  # AuditRequest


def repo_case() -> Workload:
    """Ten ~600-character paragraphs of this repository's README around the fictional fact, its query and answer."""
    from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, make_request

    words = " ".join((REPO / "README.md").read_text(encoding="utf-8").split()).split(" ")
    paragraphs = [" ".join(words[i * 100 : (i + 1) * 100]) for i in range(9)]
    docs = [(f"r{i}", t) for i, t in enumerate(paragraphs[:4])] + [FICTIONAL_DOC]
    docs += [(f"r{i}", t) for i, t in enumerate(paragraphs[4:], start=4)]
    return Workload("repo_text_10_docs", make_request(docs, FICTIONAL_QUERY, FICTIONAL_RESPONSE))


def hotpotqa_case(model, data: Path) -> Workload:
    from engine_cost import build_case

    case = build_case(model, data, 64)
    return Workload(f"hotpotqa:{case.source}", case.request)


def masks_for(n: int, seed: int = 0) -> np.ndarray:
    """Leave-one-out masks, then distinct random keep-masks (p = 0.5)."""
    loo = ~np.eye(n, dtype=bool)
    rng = np.random.default_rng(seed)
    seen = {tuple(r) for r in loo}
    rows = []
    while len(rows) < RANDOM_MASKS:
        row = rng.random(n) < 0.5
        if tuple(row) not in seen:
            seen.add(tuple(row))
            rows.append(row)
    return np.vstack([loo, np.array(rows)])


def prepare(model, workload: Workload):
    from faithaudit.audits.prompt.rag import build_layout
    from faithaudit.audits.scoring import score_full_context

    layout = build_layout(workload.request, model)
    response = model.encode(workload.request.response)
    base = score_full_context(model, layout, response, with_attention=False)
    return layout, response, base


def score_once(model, layout, response, base, masks) -> tuple[np.ndarray, float, int, int]:
    from faithaudit.audits.scoring import logprobs, score_masks

    sync(model)
    passes, tokens = model.counter.snapshot()
    t0 = time.perf_counter()
    lp = logprobs(score_masks(model, layout, response, masks, base=base))
    sync(model)
    seconds = time.perf_counter() - t0
    p1, t1 = model.counter.snapshot()
    return lp, seconds, p1 - passes, t1 - tokens


def sync(model) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def batch_sizes(model, workload: Workload, sizes: list[int], repeats: int) -> dict:
    from faithaudit.audits.model.device import Compute

    layout, response, base = prepare(model, workload)
    masks = masks_for(layout.num_sources)
    before = model.compute
    results: dict[int, dict] = {s: {"seconds": []} for s in sizes}
    reference = None
    try:
        for r in range(repeats + 1):  # round 0 warms up every size and is not timed
            for size in sizes if r % 2 == 0 else sizes[::-1]:
                model.compute = Compute(device=before.device, dtype=before.dtype, batch_size=size)
                lp, seconds, passes, tokens = score_once(model, layout, response, base, masks)
                if size == sizes[0] and reference is None:
                    reference = lp
                row = results[size]
                row.update(passes=passes, tokens_fed=tokens, max_abs_diff_nats=float(np.abs(lp - reference).max()))
                if r > 0:
                    row["seconds"].append(seconds)
    finally:
        model.compute = before
    out = {}
    for size, row in results.items():
        median = statistics.median(row["seconds"])
        out[str(size)] = {
            **row,
            "median_seconds": median,
            "rows_per_second": len(masks) / median,
            "tokens_per_second": row["tokens_fed"] / median,
        }
    base_seconds = out[str(sizes[0])]["median_seconds"]
    for row in out.values():
        row["speedup_vs_first"] = base_seconds / row["median_seconds"]
    return {"masks": len(masks), "prompt_tokens": len(layout.build().ids), "sizes": out}


def dtypes(folder: str, device: str, workload: Workload, names: list[str], threads: int | None) -> dict:
    """Leave-one-out reliance of every source under each dtype (same masks, same case, same device)."""
    from faithaudit.audits.model.device import Compute
    from faithaudit.audits.model.hf import HFModelAdapter

    reliance, seconds = {}, {}
    for name in names:
        model = HFModelAdapter.from_pretrained(folder, threads=threads, compute=Compute(device=device, dtype=name))
        layout, response, base = prepare(model, workload)
        n = layout.num_sources
        score_once(model, layout, response, base, ~np.eye(n, dtype=bool)[:1])  # warm-up
        lp, secs, _, _ = score_once(model, layout, response, base, ~np.eye(n, dtype=bool))
        reliance[name] = (base.score.logprob - lp).tolist()
        seconds[name] = secs
        del model
    first = names[0]
    out = {"sources": [s.id for s in layout.sources], "reliance_nats": reliance, "loo_seconds": seconds}
    for name in names[1:]:
        a, b = np.array(reliance[first]), np.array(reliance[name])
        out[f"{name}_vs_{first}"] = {
            "max_abs_diff_nats": float(np.abs(a - b).max()),
            "median_abs_diff_nats": float(np.median(np.abs(a - b))),
            "top1_agrees": int(np.argmax(a)) == int(np.argmax(b)),
            "rank_order_agrees": bool((np.argsort(-a) == np.argsort(-b)).all()),
            "seconds_ratio": seconds[name] / seconds[first],
        }
    return out


def load(args):
    from faithaudit.audits.model.device import Compute
    from faithaudit.audits.model.hf import HFModelAdapter
    from faithaudit.audits.model.registry import materialize, resolve_model
    from faithaudit.config import get_settings

    location = resolve_model(args.model or get_settings().default_model)
    folder = str(materialize(location, get_settings().cache_dir))
    compute = Compute(device=args.device, dtype=args.sizes_dtype, batch_size=1)
    return folder, HFModelAdapter.from_pretrained(folder, name=location.name, threads=args.threads, compute=compute)


def run(args) -> dict:
    import torch
    import transformers

    folder, model = load(args)
    data = Path(args.data)
    workload = hotpotqa_case(model, data) if data.is_file() else repo_case()
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {
        "model": model.name,
        "device": str(model.device),
        "device_name": (
            torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else platform.processor()
        ),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "case": workload.name,
        "sizes_dtype": args.sizes_dtype,
        "repeats": args.repeats,
        "batching": batch_sizes(model, workload, sizes, args.repeats),
    }
    if args.dtypes:
        del model
        result["dtypes"] = dtypes(folder, args.device, workload, args.dtypes.split(","), args.threads)
    return result


def print_result(res: dict) -> None:
    b = res["batching"]
    print(f"{res['case']} on {res['device']} ({res['device_name']}), {b['masks']} masks, {b['prompt_tokens']} tokens")
    print(f"{'batch':>5} {'median s':>9} {'rows/s':>8} {'tokens/s':>9} {'speedup':>8} {'max |diff| nats':>16}")
    for size, row in b["sizes"].items():
        print(
            f"{size:>5} {row['median_seconds']:9.3f} {row['rows_per_second']:8.1f} {row['tokens_per_second']:9.0f} "
            f"{row['speedup_vs_first']:8.2f} {row['max_abs_diff_nats']:16.2e}"
        )
    for key, row in res.get("dtypes", {}).items():
        if key.endswith("_vs_float32"):
            print(f"{key}: {json.dumps(row)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="A model name or folder (default: the configured default).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--sizes-dtype", default="float32", help="the dtype the batch sizes are timed in")
    ap.add_argument("--dtypes", default="", help="e.g. float32,bfloat16 (the first is the reference)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    res = run(args)
    print_result(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
