"""Mechanism audits over benchmark cases: where the relied-on source's effect leaves it, and what carries it.

    PYTHONPATH=. python benchmarks/mechanism.py --fictional 4 --hotpotqa 2 --threads 1 \\
        --json benchmarks/results/mechanism.json

Each case is audited with leave_one_out + mechanism at the default settings (token_swap corruption, 4 head layers),
no placebos, orders or flips (the mechanism's own cost is what is measured). Per case: the traced source and
whether it is the gold one, the readout layers, attention_share_of_effect (>= 0.5: attention-mediated, else
MLP-mediated, by the section's own measure), the self-checks, corrupted vs leave-one-out log p, and whether
zero-ablating the top causal head drops log p more than zero-ablating the median head of its layer. A second
corruption seed re-runs the span trace only, to check the readout layers agree within 2 layers.
Fictional cases are ``calibration.py``'s (an invented fact among three neutral HotpotQA paragraphs); HotpotQA cases
are the first of the dev split after the 20 test cases (``--skip 20``), 10 paragraphs each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import dataset_cases, fictional_cases  # noqa: E402
from compare_contextcite import default_data_dir  # noqa: E402

from faithaudit.api_schemas import AuditRequest  # noqa: E402
from faithaudit.audits.mechanism import readout  # noqa: E402

AUDIT = {"methods": ["leave_one_out", "mechanism"], "placebos": 0, "orders": 1, "answer_flip_top_k": 0}


def request(case: dict) -> AuditRequest:
    return AuditRequest.model_validate(
        {
            "query": case["query"],
            "response": case["response"],
            "pipeline": {"kind": "rag", "documents": [{"id": i, "text": t} for i, t in case["documents"]]},
            "audit": AUDIT,
        }
    )


def second_seed_readout(model, req: AuditRequest, index: int) -> list[int | None]:
    from faithaudit.audits.context import Findings, StageContext
    from faithaudit.audits.mechanism.source import trace_in_context
    from faithaudit.audits.meter import ProgressTracker
    from faithaudit.audits.prompt.layout import request_layout
    from faithaudit.audits.scoring import score_full_context

    layout, response, _ = request_layout(req, model)
    ids = model.encode(response)
    base = score_full_context(model, layout, ids, with_attention=False)
    ctx = StageContext(req, model, layout, response, ids, base, ProgressTracker(1, None))
    t = trace_in_context(ctx, Findings(), index, seed=987_654, span_only=True).trace
    if t.span is None:
        return [None, None]
    return readout.readout_layers(readout.recovered(t.span, t.clean, t.corrupted))


def run_case(case: dict, model) -> dict:
    from faithaudit.audits.run import run_audit

    req = request(case)
    t0 = time.perf_counter()
    report = run_audit(req, model)
    seconds = time.perf_counter() - t0
    (m,) = report.mechanism
    row = {
        "id": case["id"],
        "source": m.source,
        "source_is_gold": m.source in case["gold"],
        "clean_logprob": m.clean_logprob,
        "corrupted_logprob": m.corrupted_logprob,
        "loo_logprob": m.loo_logprob,
        "skipped_reason": m.skipped_reason,
        "forward_passes": m.forward_passes,
        "tokens_processed": report.cost.by_stage["mechanism"].tokens_processed,
        "seconds": round(seconds, 2),
    }
    if m.skipped_reason is not None:
        return row
    top = max(m.heads, key=lambda h: h.restore)
    layer = sorted(h.ablation_drop_nats for h in m.heads if h.layer == top.layer)
    index = [s.id for s in report.sources].index(m.source)
    second = second_seed_readout(model, req, index)
    return row | {
        "readout_layers": m.readout_layers,
        "readout_layers_second_seed": second,
        "readout_agree_within_2": all(
            a is not None and b is not None and abs(a - b) <= 2 for a, b in zip(m.readout_layers, second, strict=True)
        ),
        "attention_share_of_effect": m.attention_share_of_effect,
        "mediated_by": None
        if m.attention_share_of_effect is None
        else ("attention" if m.attention_share_of_effect >= 0.5 else "mlp"),
        "all_attention_after_restore": m.all_attention_after_restore,
        "unchanged_run_delta_nats": m.unchanged_run_delta_nats,
        "span_first": m.layers[0].restore_source_residual,
        "span_last": m.layers[-1].restore_source_residual,
        "top_head": [top.layer, top.head],
        "top_head_restore": top.restore,
        "top_head_ablation_drop_nats": top.ablation_drop_nats,
        "median_head_ablation_drop_nats": layer[len(layer) // 2],
        "top_head_beats_median": top.ablation_drop_nats > layer[len(layer) // 2],
        "causal_not_attending_heads": m.causal_not_attending_heads,
        "attending_not_causal_heads": m.attending_not_causal_heads,
        "reading": m.reading,
    }


def summarise(rows: list[dict]) -> dict:
    traced = [r for r in rows if r["skipped_reason"] is None]
    fictional = [r for r in traced if r["id"].startswith("fictional")]

    def count(rows, key, value):
        return sum(1 for r in rows if r.get(key) == value)

    return {
        "cases": len(rows),
        "traced": len(traced),
        "skipped": len(rows) - len(traced),
        "attention_mediated": count(traced, "mediated_by", "attention"),
        "mlp_mediated": count(traced, "mediated_by", "mlp"),
        "top_head_beats_median_fictional": f"{count(fictional, 'top_head_beats_median', True)}/{len(fictional)}",
        "readout_agree_within_2": f"{count(traced, 'readout_agree_within_2', True)}/{len(traced)}",
        "token_swap_within_1_nat_of_loo": sum(
            1 for r in rows if r["loo_logprob"] is not None and abs(r["corrupted_logprob"] - r["loo_logprob"]) <= 1
        ),
        "self_checks_hold": sum(
            1
            for r in traced
            if r["span_first"] >= 0.95
            and r["span_last"] <= 0.05
            and abs(r["all_attention_after_restore"] - 1) <= 0.02
            and abs(r["unchanged_run_delta_nats"]) <= 1e-4
        ),
        "forward_passes_median": float(np.median([r["forward_passes"] for r in rows])) if rows else None,
        "seconds_median": float(np.median([r["seconds"] for r in rows])) if rows else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fictional", type=int, default=4)
    ap.add_argument("--hotpotqa", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from faithaudit.audits.model.registry import load_model
    from faithaudit.config import get_settings

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(None, get_settings())
    data = default_data_dir()
    cases = fictional_cases(args.fictional, data) + dataset_cases("hotpotqa", args.hotpotqa, data, skip=20)
    rows_path = args.json.with_suffix(".jsonl")
    done = {}
    if args.resume and rows_path.exists():
        done = {r["id"]: r for r in map(json.loads, rows_path.read_text().splitlines())}
    rows = []
    for case in cases:
        row = done.get(case["id"]) or run_case(case, model)
        if case["id"] not in done:
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        rows.append(row)
        print(json.dumps({k: row.get(k) for k in ("id", "source", "readout_layers", "mediated_by", "seconds")}))
    out = {"command": " ".join(["benchmarks/mechanism.py", *(argv or sys.argv[1:])]), "summary": summarise(rows)}
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
