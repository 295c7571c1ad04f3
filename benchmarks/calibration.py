"""Do the calibrated labels survive noise? Label accuracy of the default audit on many cases, committed results.

    PYTHONPATH=. python benchmarks/calibration.py --part fictional --cases 24 \\
        --json benchmarks/results/calibration_fictional.json
    PYTHONPATH=. python benchmarks/calibration.py --part hotpotqa --cases 20 \\
        --json benchmarks/results/calibration_hotpotqa.json
    PYTHONPATH=. python benchmarks/calibration.py --part musique --cases 20 \\
        --json benchmarks/results/calibration_musique.json

Parts:
- ``fictional``: an invented fact (a capital, a founder, a river, an author; names drawn from a seeded syllable
  generator, so the model cannot know them) in one document, beside 3 neutral paragraphs taken from HotpotQA
  distractors (a source disjoint from the placebo bank), in a seeded order. Acceptance: the answer-bearing
  document is ``decisive`` in >= 95% of cases, and neutral documents are labelled neither ``decisive`` nor
  ``distracting`` in >= 95% of them.
- ``hotpotqa`` / ``musique``: the dataset's paragraphs (at most 10, gold kept), the gold answer as the response.
  Acceptance: ``decisive`` labels hit gold paragraphs with precision >= 0.9, and a gold paragraph is decisive in
  >= 80% of cases (a rule that labels nothing fails the second).

Every case runs the default audit's label-relevant stages: attention, leave-one-out, no-context, 16 placebos, 3
document orders and answer flips (the surrogate does not set labels, so context ablation is left out to save
time). Per-case rows go to ``<json>l`` (``--resume`` continues), the summary to ``<json>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from compare_contextcite import default_data_dir, load_cases  # noqa: E402

from faithaudit.api_schemas import AuditRequest, LabelThresholds  # noqa: E402

METHODS = ["attention", "leave_one_out", "no_context"]
ONSETS = ["Vel", "Tar", "Quen", "Mor", "Zan", "Oss", "Bril", "Dov", "Kesh", "Lum", "Prax", "Ulm", "Yor", "Grav"]
CODAS = ["mora", "squin", "dell", "varo", "thane", "ric", "lowe", "mundt", "bery", "ssik", "quay", "ondo"]
TEMPLATES = [
    ("What is the capital of {a}?", "{a} is a small island nation in the {b} Sea. Its capital is the harbour town "
     "of {c}, founded by salt traders.", "The capital of {a} is {c}."),
    ("Who founded the company {a}?", "{a} is a maker of copper kettles. It was founded by the engineer {c} {b} in a "
     "small workshop by the river.", "{a} was founded by {c} {b}."),
    ("Which river flows through the town of {a}?", "The town of {a} lies on the banks of the river {c}, which floods "
     "its lower streets every spring near the {b} bridge.", "The river {c} flows through {a}."),
    ("Who wrote the novel The {a} Letters?", "The novel The {a} Letters was written by {c} {b}, a former teacher, "
     "and became popular among sailors.", "The {a} Letters was written by {c} {b}."),
]  # fmt: skip


def _name(rng: np.random.Generator) -> str:
    return str(rng.choice(ONSETS)) + str(rng.choice(CODAS))


def neutral_paragraphs(data_dir: Path) -> list[str]:
    """HotpotQA distractor paragraphs (never a gold paragraph), 200-600 characters, de-duplicated."""
    out: dict[str, None] = {}
    with (data_dir / "hotpotqa_dev_distractor.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            gold = set(r["gold_document_ids"])
            for d in r["documents"]:
                text = " ".join(d["text"].split())
                if d["id"] not in gold and 200 <= len(text) <= 600:
                    out[text] = None
    return list(out)


def fictional_cases(count: int, data_dir: Path, *, seed: int = 11) -> list[dict]:
    rng = np.random.default_rng(seed)
    pool = neutral_paragraphs(data_dir)
    cases = []
    for k in range(count):
        query, fact, response = TEMPLATES[k % len(TEMPLATES)]
        a, b, c = _name(rng), _name(rng), _name(rng)
        neutral = [pool[int(i)] for i in rng.choice(len(pool), size=3, replace=False)]
        docs = [("fact", fact.format(a=a, b=b, c=c))] + [(f"n{j}", t) for j, t in enumerate(neutral)]
        order = rng.permutation(len(docs))
        cases.append(
            {
                "id": f"fictional-{k}",
                "query": query.format(a=a, b=b, c=c),
                "response": response.format(a=a, b=b, c=c),
                "documents": [docs[int(i)] for i in order],
                "gold": ["fact"],
            }
        )
    return cases


def dataset_cases(dataset: str, count: int, data_dir: Path, *, skip: int = 0) -> list[dict]:
    """``count`` cases after the first ``skip`` (``--skip 20``: a dev split disjoint from the 20 test cases)."""
    out = []
    for case in load_cases(dataset, data_dir, count + skip, 10)[skip:]:
        docs = [(f"p{i}", t) for i, t in enumerate(case.paragraphs)]
        out.append(
            {"id": case.id, "query": case.question, "response": case.answer, "documents": docs,
             "gold": [f"p{i}" for i in case.gold]}
        )  # fmt: skip
    return out


def request(case: dict) -> AuditRequest:
    return AuditRequest.model_validate(
        {
            "query": case["query"],
            "response": case["response"],
            "pipeline": {"kind": "rag", "documents": [{"id": i, "text": t} for i, t in case["documents"]]},
            "audit": {"methods": METHODS},
        }
    )


def run_case(case: dict, model) -> dict:
    from faithaudit.audits.run import prepare_audit, report_of, run_stages

    t0 = time.perf_counter()
    prepared = prepare_audit(request(case), model)
    found = run_stages(prepared, prepared.plan.stages, prepared.start())
    report = report_of(prepared, found)
    s = report.summary
    return {
        "id": case["id"],
        "gold": case["gold"],
        "labels": {src.id: src.label for src in report.sources},
        "reliance": {src.id: src.reliance for src in report.sources},
        "interval": {src.id: src.reliance_interval for src in report.sources},
        "noise_floor_nats": s.noise_floor_nats,
        "order_top1_stability": s.order_top1_stability,
        "greedy_margin_nats": s.greedy_margin_nats,
        "placebo_flip_rate": s.placebo_flip_rate,
        "flips_counted": s.flips_counted,
        "forward_passes": report.cost.forward_passes,
        "tokens_by_stage": {k: v.tokens_processed for k, v in report.cost.by_stage.items()},
        "controls_raw": controls_raw(prepared, found),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def controls_raw(prepared, found) -> dict:
    """What the labels were decided from, per placebo and per order, so that fewer controls can be replayed
    exactly (``controls_replay.py``): the first k placebos and the first m orders of a run are those a run with
    k placebos and m orders would draw (both are drawn in sequence from their own seeded generators)."""
    from faithaudit.audits.report.sources import attention_ratios

    n = prepared.layout.num_sources
    check = found.flip_check
    return {
        "source_ids": [src.id for src in prepared.layout.sources],
        "order_reliance": None if found.orders is None else _nan_as_null(found.orders.reliance(found.reliance)),
        "reliance": found.reliance.tolist(),
        "placebo_reliance": found.placebos.noise.placebo_reliance.tolist(),
        "placebo_keeps_answer": None if found.placebos.keeps_answer is None else list(found.placebos.keeps_answer),
        "attention_ratio": attention_ratios(found, n),
        "positional": found.attention_baseline is not None,
        "flip_changed": {str(i): f.changed for i, f in found.flips.items()},
        "margin_holds": _margin_holds(check, prepared.request.audit.labels),
        "label_rules": prepared.request.audit.labels.model_dump(),
    }


def _margin_holds(check, rules) -> bool | None:
    """Whether the greedy answer's margin let flips count (``stages.flips.answer_gate``); None: no flip check."""
    if check is None:
        return None
    return bool(check.answer_span) and check.margin is not None and check.margin >= rules.min_greedy_margin


def decisive_at(row: dict, source: str, threshold: float) -> bool:
    """The label rule's decisive test at another ``labels.decisive``: the interval's low end at or above
    max(threshold, noise floor). Exact for rows whose flips were not counted (flips never set labels then); a row
    whose flips counted keeps its recorded label."""
    if row["flips_counted"]:
        return row["labels"][source] == "decisive"
    return row["interval"][source][0] >= max(threshold, row["noise_floor_nats"])


def relabelled(rows: list[dict], threshold: float | None) -> list[dict]:
    """Rows with ``decisive`` re-decided at ``threshold`` (None: as recorded); other labels as recorded."""
    if threshold is None:
        return rows
    out = []
    for r in rows:
        labels = {
            s: ("decisive" if decisive_at(r, s, threshold) else ("supporting" if lab == "decisive" else lab))
            for s, lab in r["labels"].items()
        }
        out.append(r | {"labels": labels})
    return out


def summarise(part: str, rows: list[dict]) -> dict:
    floors = [r["noise_floor_nats"] for r in rows]
    common = {
        "part": part,
        "cases": len(rows),
        "noise_floor_nats_median": float(np.median(floors)) if floors else None,
        "flips_counted_share": float(np.mean([bool(r["flips_counted"]) for r in rows])) if rows else None,
        "seconds_median": float(np.median([r["seconds"] for r in rows])) if rows else None,
    }
    if part == "fictional":
        answer = [r["labels"]["fact"] == "decisive" for r in rows]
        neutral = [lab not in ("decisive", "distracting") for r in rows for sid, lab in r["labels"].items()
                   if sid != "fact"]  # fmt: skip
        return common | {
            "answer_decisive_share": float(np.mean(answer)),
            "neutral_sources": len(neutral),
            "neutral_neither_decisive_nor_distracting_share": float(np.mean(neutral)),
            "accepted": bool(np.mean(answer) >= 0.95 and np.mean(neutral) >= 0.95),
        }
    decisive = [(sid in r["gold"]) for r in rows for sid, lab in r["labels"].items() if lab == "decisive"]
    hit = [any(r["labels"][g] == "decisive" for g in r["gold"]) for r in rows]
    precision = float(np.mean(decisive)) if decisive else None
    return common | {
        "decisive_labels": len(decisive),
        "decisive_precision_on_gold": precision,
        "cases_with_a_decisive_gold_share": float(np.mean(hit)),
        "accepted": bool(precision is not None and precision >= 0.9 and np.mean(hit) >= 0.8),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["fictional", "hotpotqa", "musique"], required=True)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", type=int, default=0, help="Skip the first N dataset cases (a dev split).")
    ap.add_argument(
        "--decisive", type=float, default=None,
        help="Summarise with decisive re-decided at this labels.decisive (default: the schema's default, so rows "
        "recorded under an earlier default are summarised as an audit would label them today).",
    )  # fmt: skip
    args = ap.parse_args(argv)
    rows_path = args.json.with_suffix(".jsonl")
    rows = [json.loads(x) for x in rows_path.read_text().splitlines()] if rows_path.exists() else []
    if not args.resume and not args.summary_only:
        rows = []
        rows_path.write_text("")
    if not args.summary_only:
        from faithaudit.audits.model.registry import load_adapter
        from faithaudit.config import get_settings

        data_dir = default_data_dir()
        cases = (
            fictional_cases(args.cases, data_dir)
            if args.part == "fictional"
            else dataset_cases(args.part, args.cases, data_dir, skip=args.skip)
        )
        model = load_adapter(get_settings().default_model, cache_dir=get_settings().cache_dir, threads=args.threads)
        done = {r["id"] for r in rows}
        for case in cases:
            if case["id"] in done:
                continue
            row = run_case(case, model)
            rows.append(row)
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{row['id']}: {row['labels']} floor {row['noise_floor_nats']} ({row['seconds']} s)", flush=True)
    command = " ".join(["benchmarks/calibration.py", *(argv or sys.argv[1:])])
    threshold = args.decisive if args.decisive is not None else LabelThresholds().decisive
    summary = summarise(args.part, relabelled(rows, threshold)) | {"command": command}
    summary["decisive_threshold_nats"] = threshold
    if args.summary_only and args.json.exists():  # keep the command that ran the cases
        previous = json.loads(args.json.read_text()).get("command")
        summary |= {"command": previous or command, "summary_command": command}
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def _nan_as_null(rows: np.ndarray) -> list[list[float | None]]:
    """Order rows as strict JSON: a source no other order re-scored (NaN) as null."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in rows]


if __name__ == "__main__":
    raise SystemExit(main())
