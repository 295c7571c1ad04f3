"""What each audit method costs on one real 10-document HotpotQA case (~1,300 prompt tokens).

Loads the model once, warms it up, then for ``--repeats`` rounds measures forward passes, tokens fed to the
model (from the adapter's ``ForwardCounter``) and wall-clock seconds for:

- ``full_context_plain``: one teacher-forced pass on prompt + response, no attention probe, no cache kept;
- ``full_context_with_attention``: ``score_full_context(..., with_attention=True)``: score, attention and
  KV cache in one pass;
- ``leave_one_out_naive``: one fresh pass per source on the whole ablated sequence;
- ``leave_one_out_prefix_reuse``: ``score_masks`` over the leave-one-out masks, reusing the full-context
  cache;
- ``context_ablation_<k>``: ``k`` random keep-masks through ``score_masks`` with the cache;
- ``no_context``: the all-removed mask through ``score_masks`` with the cache;
- ``full_audit``: ``run_audit`` with the default methods, ``num_ablations=k`` and no answer flips.

Timings on a shared CPU are noisy: the table reports the median (and min/max) over the repeats. The ratios are
measured in this one run. ``--json OUT`` writes every figure plus the machine it ran on.

    PYTHONPATH=. python benchmarks/engine_cost.py --repeats 3 --json /tmp/engine_cost.json
    PYTHONPATH=. python benchmarks/engine_cost.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import agent_cost
import numpy as np

from faithaudit.api_schemas import AuditRequest
from faithaudit.audits import interventions
from faithaudit.audits.model.adapter import ModelAdapter, ResponseScore
from faithaudit.audits.prompt.rag import RagLayout, build_layout
from faithaudit.audits.run import run_audit
from faithaudit.audits.scoring import BaseRun, score_full_context, score_masks
from faithaudit.config import get_settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "benchmarks" / "hotpotqa_dev_distractor.jsonl"
MODEL_NAME = "smollm2-135m-instruct"
NUM_DOCS = 10
MIN_TOKENS, MAX_TOKENS = 1_100, 1_500
LOO_TOLERANCE = 1e-3  # nats
TOKEN_RATIO_TARGET = 0.6


# -- the case -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    request: AuditRequest
    layout: RagLayout
    response_ids: list[int]
    prompt_tokens: int
    source: str  # which records it came from


def _request(question: str, answer: str, texts: list[str], num_ablations: int) -> AuditRequest:
    # Titles may hold ':' or brackets, which document ids may not: number the documents instead.
    return AuditRequest.model_validate(
        {
            "query": question,
            "response": answer,
            "pipeline": {
                "kind": "rag",
                "documents": [{"id": f"d{i + 1}", "text": t} for i, t in enumerate(texts)],
            },
            "audit": {"num_ablations": num_ablations, "answer_flip_top_k": 0},
        }
    )


def _case(model: ModelAdapter, record_id: str, question: str, answer: str, texts: list[str], k: int) -> Case:
    request = _request(question, answer, texts, k)
    layout = build_layout(request, model)
    return Case(
        request=request,
        layout=layout,
        response_ids=model.encode(answer),
        prompt_tokens=len(layout.build().ids),
        source=record_id,
    )


def build_case(model: ModelAdapter, data: Path, num_ablations: int) -> Case:
    """The first record with exactly 10 documents and a 1,100-1,500 token prompt.

    If there is none, pad: each document of a 10-document record gets the matching document of the next
    10-document record appended, and the first such pair in range is used.
    """
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    ten = [r for r in records if len(r["documents"]) == NUM_DOCS]
    if not ten:
        raise SystemExit(f"{data}: no record has exactly {NUM_DOCS} documents")
    for r in ten:
        texts = [d["text"] for d in r["documents"]]
        case = _case(model, r["id"], r["question"], r["answer"], texts, num_ablations)
        if MIN_TOKENS <= case.prompt_tokens <= MAX_TOKENS:
            return case
    for a, b in zip(ten, ten[1:], strict=False):
        texts = [f"{x['text']} {y['text']}" for x, y in zip(a["documents"], b["documents"], strict=True)]
        case = _case(model, f"{a['id']}+{b['id']}", a["question"], a["answer"], texts, num_ablations)
        if MIN_TOKENS <= case.prompt_tokens <= MAX_TOKENS:
            return case
    raise SystemExit(f"{data}: no case of {MIN_TOKENS}-{MAX_TOKENS} prompt tokens, even padded")


# -- measuring -------------------------------------------------------------------------------------------
@dataclass
class Measure:
    forward_passes: list[int] = field(default_factory=list)
    tokens_processed: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, passes: int, tokens: int, seconds: float) -> None:
        self.forward_passes.append(passes)
        self.tokens_processed.append(tokens)
        self.seconds.append(seconds)

    @property
    def passes(self) -> int:
        return self.forward_passes[0]

    @property
    def tokens(self) -> int:
        return self.tokens_processed[0]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_json(self) -> dict[str, Any]:
        return {
            "forward_passes": self.passes,
            "tokens_processed": self.tokens,
            "counts_stable_across_repeats": len(set(self.forward_passes)) == 1 and len(set(self.tokens_processed)) == 1,
            "seconds": [round(s, 4) for s in self.seconds],
            "seconds_median": round(self.median, 4),
            "seconds_min": round(min(self.seconds), 4),
            "seconds_max": round(max(self.seconds), 4),
        }


def timed(model: ModelAdapter, measure: Measure, fn: Callable[[], Any]) -> Any:
    passes0, tokens0 = model.counter.snapshot()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    passes1, tokens1 = model.counter.snapshot()
    measure.add(passes1 - passes0, tokens1 - tokens0, seconds)
    return result


def loo_naive(model: ModelAdapter, case: Case) -> list[ResponseScore]:
    """Leave-one-out with no reuse: a fresh forward pass over each whole ablated sequence."""
    out = []
    for i in range(case.layout.num_sources):
        score, _ = model.score(case.layout.without(i).ids, case.response_ids)
        out.append(score)
    return out


def prefix_reuse_floor(case: Case) -> int:
    """Tokens leave-one-out must feed when every ablated prompt reuses its longest common prefix with the
    full prompt (the last prompt token always fed): the best any prefix-cache scheme can do on this layout."""
    full = case.layout.build().ids
    total = 0
    for i in range(case.layout.num_sources):
        ids = case.layout.without(i).ids
        common = 0
        while common < min(len(ids), len(full)) and ids[common] == full[common]:
            common += 1
        total += len(ids) + len(case.response_ids) - min(common, len(ids) - 1)
    return total


def _max_diff(a: list[ResponseScore], b: list[ResponseScore]) -> tuple[float, float]:
    """Max abs difference of the sequence log-probs and of the per-token log-probs, in nats."""
    seq = max(abs(x.logprob - y.logprob) for x, y in zip(a, b, strict=True))
    tok = max(float(np.max(np.abs(x.token_logprobs - y.token_logprobs))) for x, y in zip(a, b, strict=True))
    return seq, tok


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    from faithaudit.audits.model.registry import load_adapter

    settings = get_settings()
    threads = args.threads or settings.torch_threads
    t0 = time.perf_counter()
    model = load_adapter(args.model, cache_dir=settings.cache_dir, threads=threads)
    load_seconds = time.perf_counter() - t0
    case = build_case(model, args.data, args.num_ablations)
    layout, response_ids, n = case.layout, case.response_ids, case.layout.num_sources
    full_ids = layout.build().ids
    print(
        f"case {case.source}: {n} documents, {case.prompt_tokens} prompt tokens, "
        f"{len(response_ids)} response tokens ({case.request.response!r}); "
        f"model loaded in {load_seconds:.1f}s, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    # Warm-up: one scoring pass of each kind, none of it counted.
    warm_base = score_full_context(model, layout, response_ids, with_attention=True)
    model.score(full_ids, response_ids)
    score_masks(model, layout, response_ids, interventions.leave_one_out_masks(n)[:1], base=warm_base)

    loo_masks = interventions.leave_one_out_masks(n)
    opts = case.request.audit
    ablation_masks = interventions.random_keep_masks(
        n, args.num_ablations, keep_probability=opts.keep_probability, seed=opts.seed
    )
    ablation_name = f"context_ablation_{args.num_ablations}"
    names = [
        "full_context_plain",
        "full_context_with_attention",
        "leave_one_out_naive",
        "leave_one_out_prefix_reuse",
        ablation_name,
        "no_context",
        "full_audit",
    ]
    measures = {name: Measure() for name in names}
    by_stage: list[dict[str, dict[str, Any]]] = []
    loo_seq_diff = loo_tok_diff = attn_vs_plain_diff = audit_vs_loo_diff = 0.0

    for r in range(args.repeats):
        plain, _ = timed(model, measures["full_context_plain"], lambda: model.score(full_ids, response_ids))
        base: BaseRun = timed(
            model,
            measures["full_context_with_attention"],
            lambda: score_full_context(model, layout, response_ids, with_attention=True),
        )
        naive = timed(model, measures["leave_one_out_naive"], lambda: loo_naive(model, case))
        masked = partial(score_masks, model, layout, response_ids, base=base)
        reuse = timed(model, measures["leave_one_out_prefix_reuse"], partial(masked, loo_masks))
        timed(model, measures[ablation_name], partial(masked, ablation_masks))
        timed(model, measures["no_context"], partial(masked, interventions.no_context_mask(n)))
        report = timed(model, measures["full_audit"], lambda: run_audit(case.request, model))
        by_stage.append({k: v.model_dump() for k, v in report.cost.by_stage.items()})

        seq, tok = _max_diff(naive, reuse)
        loo_seq_diff, loo_tok_diff = max(loo_seq_diff, seq), max(loo_tok_diff, tok)
        attn_vs_plain_diff = max(
            attn_vs_plain_diff, float(np.max(np.abs(plain.token_logprobs - base.score.token_logprobs)))
        )
        audit_reliance = np.array([s.reliance for s in report.sources], dtype=np.float64)
        naive_reliance = np.array([base.score.logprob - s.logprob for s in naive])
        audit_vs_loo_diff = max(audit_vs_loo_diff, float(np.max(np.abs(audit_reliance - naive_reliance))))
        print(
            f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {m.seconds[-1]:.2f}s" for k, m in measures.items()),
            flush=True,
        )

    loo_n, loo_r = measures["leave_one_out_naive"], measures["leave_one_out_prefix_reuse"]
    fc_p, fc_a = measures["full_context_plain"], measures["full_context_with_attention"]
    floor = prefix_reuse_floor(case)
    ratios = {
        "tokens_loo_prefix_reuse_over_naive": loo_r.tokens / loo_n.tokens,
        "tokens_loo_prefix_reuse_over_naive_target": TOKEN_RATIO_TARGET,
        "tokens_loo_prefix_reuse_floor": floor,
        "tokens_loo_prefix_reuse_floor_over_naive": floor / loo_n.tokens,
        "time_loo_prefix_reuse_over_naive_median": loo_r.median / loo_n.median,
        "time_full_context_with_attention_over_plain_median": fc_a.median / fc_p.median,
    }
    stage_names = list(dict.fromkeys(k for s in by_stage for k in s))
    stages = {
        k: {
            "forward_passes": by_stage[0][k]["forward_passes"],
            "tokens_processed": by_stage[0][k]["tokens_processed"],
            "seconds": [s[k]["seconds"] for s in by_stage],
            "seconds_median": statistics.median(s[k]["seconds"] for s in by_stage),
        }
        for k in stage_names
    }
    return {
        "case": {
            "records": case.source,
            "data": str(args.data),
            "num_documents": n,
            "prompt_tokens": case.prompt_tokens,
            "response": case.request.response,
            "response_tokens": len(response_ids),
        },
        "settings": {
            "repeats": args.repeats,
            "num_ablations": args.num_ablations,
            "model": args.model,
            "model_revision": model.revision,
            "model_load_seconds": round(load_seconds, 2),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
        },
        "methods": {k: m.as_json() for k, m in measures.items()},
        "full_audit_by_stage": stages,
        "ratios": ratios,
        "checks": {
            "loo_naive_vs_prefix_reuse_max_abs_logprob_diff": loo_seq_diff,
            "loo_naive_vs_prefix_reuse_max_abs_token_logprob_diff": loo_tok_diff,
            "loo_within_tolerance": loo_seq_diff <= LOO_TOLERANCE and loo_tok_diff <= LOO_TOLERANCE,
            "tolerance_nats": LOO_TOLERANCE,
            "full_context_attention_vs_plain_max_abs_token_logprob_diff": attn_vs_plain_diff,
            "full_audit_reliance_vs_naive_loo_max_abs_diff": audit_vs_loo_diff,
        },
    }


# -- printing --------------------------------------------------------------------------------------------
def print_report(res: dict[str, Any]) -> None:
    c, m = res["case"], res["machine"]
    print()
    print(
        f"engine cost: {c['num_documents']} documents, {c['prompt_tokens']} prompt tokens, "
        f"{c['response_tokens']} response tokens; {res['settings']['repeats']} repeats; "
        f"{m['cpu_count']} CPUs, torch {m['torch_version']} with {m['torch_threads']} threads"
    )
    head = f"{'method':<30} {'passes':>7} {'tokens':>9} {'median s':>9} {'min s':>8} {'max s':>8}"
    print(head)
    print("-" * len(head))
    for name, row in res["methods"].items():
        print(
            f"{name:<30} {row['forward_passes']:>7} {row['tokens_processed']:>9} "
            f"{row['seconds_median']:>9.3f} {row['seconds_min']:>8.3f} {row['seconds_max']:>8.3f}"
        )
    print()
    print("full_audit by stage (median s over repeats):")
    for name, row in res["full_audit_by_stage"].items():
        print(f"  {name:<28} {row['forward_passes']:>7} {row['tokens_processed']:>9} {row['seconds_median']:>9.3f}")
    r, ch = res["ratios"], res["checks"]
    print()
    verdict = "ok" if r["tokens_loo_prefix_reuse_over_naive"] <= TOKEN_RATIO_TARGET else "OVER TARGET"
    print(
        f"tokens(loo prefix reuse) / tokens(loo naive)      = {r['tokens_loo_prefix_reuse_over_naive']:.3f}"
        f"  (target <= {TOKEN_RATIO_TARGET}: {verdict})"
    )
    print(
        f"  (longest-common-prefix floor for this layout: {r['tokens_loo_prefix_reuse_floor']} tokens, "
        f"{r['tokens_loo_prefix_reuse_floor_over_naive']:.3f} of naive)"
    )
    print(f"time(loo prefix reuse) / time(loo naive), median = {r['time_loo_prefix_reuse_over_naive_median']:.3f}")
    print(
        "time(full ctx + attention) / time(full ctx plain) = "
        f"{r['time_full_context_with_attention_over_plain_median']:.3f}"
    )
    print()
    print(
        "LOO naive vs prefix reuse: max |diff| "
        f"{ch['loo_naive_vs_prefix_reuse_max_abs_logprob_diff']:.2e} nats (sequence), "
        f"{ch['loo_naive_vs_prefix_reuse_max_abs_token_logprob_diff']:.2e} nats (per token); "
        f"tolerance {LOO_TOLERANCE:g}: {'ok' if ch['loo_within_tolerance'] else 'FAILED'}"
    )
    print(
        "full context with attention vs plain: max |diff| "
        f"{ch['full_context_attention_vs_plain_max_abs_token_logprob_diff']:.2e} nats per token"
    )
    print(
        "full_audit reliance vs naive LOO reliance: max |diff| "
        f"{ch['full_audit_reliance_vs_naive_loo_max_abs_diff']:.2e} nats"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HotpotQA distractor JSONL")
    parser.add_argument("--repeats", type=int, default=3, help="measured repetitions (default 3)")
    parser.add_argument("--num-ablations", type=int, default=64, help="random masks for context ablation")
    parser.add_argument("--model", default=MODEL_NAME, help=f"model name or path (default {MODEL_NAME})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: settings / torch)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 16 ablations")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write every figure as JSON")
    parser.add_argument("--case", choices=("rag", "agent"), default="rag", help="agent: a tau-bench trace")
    agent_cost.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.case == "agent":
        if args.quick:
            args.repeats, args.num_ablations = 1, 16
        return agent_cost.main(args)
    if args.quick:
        args.repeats, args.num_ablations = 1, 16
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if not args.data.is_file():
        parser.error(f"no data file at {args.data}")

    res = run(args)
    if args.json is not None:  # written first: a long run's figures survive a printing error
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print_report(res)
    if args.json is not None:
        print(f"\nwrote {args.json}")
    return 0 if res["checks"]["loo_within_tolerance"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
