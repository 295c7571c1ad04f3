"""What each agent-audit method costs on one real tau-bench run (GPT-4o airline agent, ~3,000 prompt tokens).

Run through ``engine_cost.py --case agent`` (or directly). The trace is converted from
../shared/data/benchmarks/ and trimmed to ``--max-prompt-tokens``; its last ``--audit-last`` tool outputs are
audited. Per method, forward passes, tokens fed and seconds (median over ``--repeats``), each exact lever side
by side with its naive baseline in this one run:

- ``leave_one_out``: each step's call and output removed; fresh passes vs. reusing the full trace's KV cache
  (a late tool output reuses everything before it);
- ``tool_unavailable``: each output replaced by an error; fresh vs. cache reuse;
- ``next_action``: log p of the recorded next action without each step; fresh vs. cache reuse;
- ``context_ablation_<k>``, ``full_context_with_attention``, and with ``--full-audit`` the default agent audit
  (no answer flips; policy replay generates, which dominates its time).

Reused and fresh scores must agree within 1e-3 nats (the exit code says whether they did).

    PYTHONPATH=. python benchmarks/engine_cost.py --case agent --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "benchmarks"
RUN_ID = "tau-airline-gpt4o-task0-trial0"
TOLERANCE = 1e-3


def _request(args: argparse.Namespace):
    from faithaudit.api_schemas import AuditRequest
    from faithaudit.tools.traces import iter_jsonl, tau_bench_request

    runs = SHARED / "tau_bench_airline_gpt4o_traces.jsonl"
    record = next(r for r in iter_jsonl(runs) if r["id"] == args.run)
    body = tau_bench_request(
        record,
        system_prompt=(SHARED / record["system_prompt_ref"]).read_text(),
        max_prompt_tokens=args.max_prompt_tokens,
        keep_last_turns=2,
        audit={"num_ablations": args.num_ablations, "answer_flip_top_k": 0},
    )
    trace = AuditRequest.model_validate(body).pipeline.trace(query="")
    body["pipeline"]["audit_steps"] = trace.auditable()[-args.audit_last :]
    return AuditRequest.model_validate(body)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from faithaudit.audits import interventions
    from faithaudit.audits.model.registry import load_adapter
    from faithaudit.audits.prompt.agent import build_agent_layout
    from faithaudit.audits.run import run_audit
    from faithaudit.audits.scoring import score_full_context, score_masks, score_pairs
    from faithaudit.audits.stages.tools import replaced_reliance, unavailable_outputs
    from faithaudit.config import get_settings
    from faithaudit.tools import registry_for

    settings = get_settings()
    model = load_adapter(args.model, cache_dir=settings.cache_dir, threads=args.threads or settings.torch_threads)
    request = _request(args)
    response = request.pipeline.trace(query="").final_answer
    response_ids = model.encode(response)
    layout = build_agent_layout(request, model, response_len=len(response_ids))
    n = layout.num_sources
    prompt_tokens = len(layout.build().ids)
    score_full_context(model, layout, response_ids, with_attention=False)  # warm-up

    figures: dict[str, dict[str, list[float]]] = {}
    diffs: dict[str, float] = {}

    def timed(name: str, fn):
        p0, t0_tokens = model.counter.snapshot()
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        p1, t1_tokens = model.counter.snapshot()
        f = figures.setdefault(name, {"passes": [], "tokens": [], "seconds": []})
        f["passes"].append(p1 - p0)
        f["tokens"].append(t1_tokens - t0_tokens)
        f["seconds"].append(seconds)
        return out

    error_ids = {i: model.encode(text) for i, text in unavailable_outputs(layout).items()}
    actions = [layout.next_action(s.id, response_ids=response_ids) for s in layout.sources]

    def next_action_pairs():
        pairs = []
        for i, a in enumerate(actions):
            keep = [k != i for k in range(n)]
            prefix = layout.build(keep, upto=a.message).ids if a.message is not None else layout.build(keep).ids
            pairs.append((prefix, a.target))
        return pairs

    def one_round():
        base = timed(
            "full_context_with_attention", lambda: score_full_context(model, layout, response_ids, with_attention=True)
        )
        fresh = timed(
            "leave_one_out_naive", lambda: [model.score(layout.without(i).ids, response_ids)[0] for i in range(n)]
        )
        reuse = timed(
            "leave_one_out_prefix_reuse",
            lambda: score_masks(model, layout, response_ids, interventions.leave_one_out_masks(n), base=base),
        )
        diffs["leave_one_out"] = max(abs(a.logprob - b.logprob) for a, b in zip(fresh, reuse, strict=True))
        fresh_u = timed(
            "tool_unavailable_naive",
            lambda: {
                i: base.score.logprob
                - model.score(layout.build(replace={i: error_ids[i]}).ids, response_ids)[0].logprob
                for i in range(n)
            },
        )
        reuse_u = timed(
            "tool_unavailable_prefix_reuse",
            lambda: replaced_reliance(model, layout, response_ids, base, unavailable_outputs(layout)),
        )
        diffs["tool_unavailable"] = max(abs(fresh_u[i] - reuse_u[i]) for i in range(n))
        pairs = next_action_pairs()
        fresh_na = timed("next_action_naive", lambda: [model.score(p, t)[0] for p, t in pairs])
        reuse_na = timed("next_action_prefix_reuse", lambda: score_pairs(model, pairs, base=base))
        diffs["next_action"] = max(abs(a.logprob - b.logprob) for a, b in zip(fresh_na, reuse_na, strict=True))
        masks = interventions.random_keep_masks(n, args.num_ablations, keep_probability=0.5, seed=0)
        timed(
            f"context_ablation_{args.num_ablations}", lambda: score_masks(model, layout, response_ids, masks, base=base)
        )
        if args.full_audit:
            return timed("full_audit", lambda: run_audit(request, model, tools=registry_for))
        return None

    for _ in range(args.repeats):
        report = one_round()

    def summary(f: dict[str, list[float]]) -> dict[str, Any]:
        return {
            "forward_passes": f["passes"][0],
            "tokens_processed": f["tokens"][0],
            "seconds_median": round(statistics.median(f["seconds"]), 3),
            "seconds": [round(s, 3) for s in f["seconds"]],
        }

    methods = {k: summary(v) for k, v in figures.items()}
    ratios = {
        f"{lever}_tokens_reuse_over_naive": round(
            methods[f"{lever}_prefix_reuse"]["tokens_processed"] / methods[f"{lever}_naive"]["tokens_processed"], 3
        )
        for lever in ("leave_one_out", "tool_unavailable", "next_action")
    } | {
        f"{lever}_seconds_reuse_over_naive": round(
            methods[f"{lever}_prefix_reuse"]["seconds_median"] / methods[f"{lever}_naive"]["seconds_median"], 3
        )
        for lever in ("leave_one_out", "tool_unavailable", "next_action")
    }
    return {
        "case": {
            "run": args.run,
            "prompt_tokens": prompt_tokens,
            "response_tokens": len(response_ids),
            "audited_steps": [s.id for s in layout.sources],
            "trim": None
            if layout.trim is None
            else {"tokens_before": layout.trim.tokens_before, "dropped_turns": len(layout.trim.dropped_turns)},
        },
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "repeats": args.repeats,
        "methods": methods,
        "ratios": ratios,
        "max_abs_diff_nats": {k: float(np.round(v, 8)) for k, v in diffs.items()},
        "within_tolerance": all(v <= TOLERANCE for v in diffs.values()),
        "full_audit_stages": {k: v.model_dump() for k, v in report.cost.by_stage.items()} if report else None,
        "reading": report.agent.reading if report and report.agent else None,
    }


def print_report(res: dict[str, Any]) -> None:
    c = res["case"]
    print(
        f"agent case {c['run']}: {c['prompt_tokens']} prompt tokens, {c['response_tokens']} response tokens, "
        f"audited {', '.join(c['audited_steps'])}; trimmed from {c['trim'] and c['trim']['tokens_before']}"
    )
    head = f"{'method':34} {'passes':>7} {'tokens':>8} {'s (median)':>11}"
    print(head)
    print("-" * len(head))
    for name, m in res["methods"].items():
        print(f"{name:34} {m['forward_passes']:>7} {m['tokens_processed']:>8} {m['seconds_median']:>11.3f}")
    print()
    for k, v in res["ratios"].items():
        print(f"{k} = {v}")
    print(f"max |reuse - fresh| (nats): {res['max_abs_diff_nats']} -> within 1e-3: {res['within_tolerance']}")
    print(f"reading: {res['reading']}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=RUN_ID, help=f"tau-bench run id (default {RUN_ID})")
    parser.add_argument("--max-prompt-tokens", type=int, default=3000)
    parser.add_argument("--audit-last", type=int, default=3, help="audit the last K non-empty tool outputs")
    parser.add_argument("--full-audit", action="store_true", help="also time a full default agent audit")


def main(args: argparse.Namespace) -> int:
    res = run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print_report(res)
    return 0 if res["within_tolerance"] else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-ablations", type=int, default=64)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    raise SystemExit(main(p.parse_args()))
