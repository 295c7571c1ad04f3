"""Side by side on real multi-hop QA: ContextCite, attention and faithaudit's interventions, same model and cases.

For each case (a HotpotQA or MuSiQue question, its paragraphs, its gold answer as the teacher-forced response,
its gold supporting paragraphs as the truth), every method ranks the paragraphs:

- ``contextcite``: PyPI ``context-cite`` (64 random ablations + Lasso), paragraphs as sources;
- ``attention``: faithaudit's attention share (mean over layers and heads) of the response rows;
- ``attention_last_layer``: the same, last layer only;
- ``attention_rollout``: attention rollout of the response rows;
- ``leave_one_out``: faithaudit's reliance (log p drop when the paragraph is removed);
- ``context_ablation``: faithaudit's surrogate weight with a fixed 64 random masks (ContextCite's design);
- ``context_ablation_adaptive``: the surrogate weight of the audit below (adaptive masks, reused passes);
- ``faithaudit_full``: the ranking a full audit reports (reliance), its cost that of the audit: the default methods
  with ``num_ablations: null`` (adaptive; ``--audit-num-ablations N`` for a fixed number). The summary also gives
  ``time_ratio_default_audit_vs_contextcite_composed``: the default audit (64 fixed masks + 16 held-out ones),
  composed from stages measured in the same process (the audit's other stages plus the fixed-64 fit, scaled by
  80/64).

Both tools run in this one process, on one model object, with the same thread count; which one runs first
alternates case by case. The prompt is ContextCite's ``"Context: {context}\\n\\nQuery: {query}"`` as the user turn.
Evaluation passes (32 shared random masks per case, top-k removals) are not counted in anyone's cost.

    PYTHONPATH=. python benchmarks/compare_contextcite.py --dataset hotpotqa --limit 20 --resume \\
        --json benchmarks/results/hotpotqa.json
    PYTHONPATH=. python benchmarks/compare_contextcite.py --dataset musique --limit 20 --max-docs 10 --resume \\
        --json benchmarks/results/musique.json

Per-case results go to ``OUT`` with ``.cases.jsonl`` as they finish; the summary JSON is rewritten after each case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faithaudit.api_schemas import AuditRequest
from faithaudit.audits import interventions
from faithaudit.audits.model.adapter import ModelAdapter
from faithaudit.audits.prompt.rag import RagLayout, build_layout
from faithaudit.audits.reliance import LassoSolver, fit_surrogate, sequence_logit, spearman
from faithaudit.audits.run import run_audit
from faithaudit.audits.scoring import logprobs, score_full_context, score_masks

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextcite_runner  # noqa: E402
import rollout  # noqa: E402
from paired_stats import median_interval, paired_difference  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "FAITHAUDIT_BENCHMARK_DATA"
FILES = {"hotpotqa": "hotpotqa_dev_distractor.jsonl", "musique": "musique_ans_sample.jsonl"}
MODEL_NAME = "smollm2-135m-instruct"
METHODS = (
    "contextcite",
    "attention",
    "attention_position_corrected",
    "attention_last_layer",
    "attention_rollout",
    "leave_one_out",
    "context_ablation",
    "context_ablation_adaptive",
    "faithaudit_full",
    "default_audit",
    "default_audit_surrogate",
)
# The stages of a default audit that do ContextCite's work: its full pass, leave-one-out and no-context (whose passes
# the surrogate reuses), the context ablation with its evaluation. The rest (attention baseline, placebos, orders,
# answer flips, ...) is what faithaudit adds; it counts in the total ratio only.
CONTEXTCITE_STAGES = ("full_context", "leave_one_out", "no_context", "context_ablation")
KS = (1, 2)
EVAL_SEED = 7_000_003  # the shared evaluation masks: never the seed of any method's fit


def peer_solver_difference(masks: np.ndarray, logprobs_: np.ndarray, tokens: int, ours: np.ndarray) -> float | None:
    """max |ours - ContextCite's LassoRegression weights| on the same masks and targets (None without the extra)."""
    try:
        from context_cite.solver import LassoRegression
    except ImportError:
        return None
    peer, _ = LassoRegression(0.01).fit(masks, sequence_logit(logprobs_).astype(np.float32), tokens)
    return float(np.max(np.abs(np.asarray(peer, dtype=np.float64) - ours)))


def default_data_dir() -> Path:
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else REPO.parent / "shared" / "data" / "benchmarks"


# -- cases -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    question: str
    answer: str
    paragraphs: list[str]
    gold: list[int]  # indices into paragraphs


def load_cases(dataset: str, data_dir: Path, limit: int, max_docs: int | None) -> list[Case]:
    """The first ``limit`` records with at least 3 paragraphs; ``max_docs`` keeps the gold ones plus the first
    distractors, in the original order."""
    path = data_dir / FILES[dataset]
    cases: list[Case] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if len(cases) >= limit:
                break
            if not line.strip():
                continue
            r = json.loads(line)
            docs = r["documents"]
            gold_ids = set(r["gold_document_ids"])
            keep = list(range(len(docs)))
            if max_docs is not None and len(docs) > max_docs:
                gold_idx = [i for i in keep if docs[i]["id"] in gold_ids]
                others = [i for i in keep if docs[i]["id"] not in gold_ids][: max(max_docs - len(gold_idx), 0)]
                keep = sorted(gold_idx + others)
            if len(keep) < 3:
                continue
            paragraphs = [" ".join(docs[i]["text"].split("\n")).strip() for i in keep]
            gold = [j for j, i in enumerate(keep) if docs[i]["id"] in gold_ids]
            cases.append(Case(r["id"], r["question"], r["answer"], paragraphs, gold))
    return cases


def audit_request(
    case: Case,
    *,
    methods: list[str] | None = None,
    num_ablations: int | None = None,
    default: bool = False,
    placebos: int | None = None,
) -> AuditRequest:
    """The benchmark's request; ``default=True`` is the request a user sends: no audit options at all (but
    ``placebos`` when given, to time the default audit with another placebo count)."""
    audit: dict[str, Any] = {} if placebos is None else {"placebos": placebos}
    if not default:
        audit["answer_flip_top_k"] = 0
        if methods is not None:
            audit["methods"] = methods
        if methods is None or "context_ablation" in methods:
            audit["num_ablations"] = num_ablations  # None: adaptive
    return AuditRequest.model_validate(
        {
            "query": case.question,
            "response": case.answer,
            "pipeline": {
                "kind": "rag",
                "documents": [{"id": f"p{i}", "text": t} for i, t in enumerate(case.paragraphs)],
            },
            "audit": audit,
        }
    )


# -- metrics ---------------------------------------------------------------------------------------------
def top_k(scores: np.ndarray, k: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def recall_at_k(scores: np.ndarray, gold: list[int], k: int) -> float:
    return len(set(top_k(scores, k)) & set(gold)) / min(k, len(gold))


def lds(scores: np.ndarray, masks: np.ndarray, actual: np.ndarray) -> float | None:
    """Spearman between the linear prediction (sum of the kept sources' scores) and the actual log-prob."""
    return spearman(masks.astype(np.float64) @ scores, actual)


# -- one case --------------------------------------------------------------------------------------------
@dataclass
class Timer:
    model: ModelAdapter

    def run(self, fn: Callable[[], Any]) -> tuple[Any, float, int]:
        _, tokens0 = self.model.counter.snapshot()
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        return out, seconds, self.model.counter.snapshot()[1] - tokens0


def run_case(
    model: ModelAdapter, case: Case, index: int, args: argparse.Namespace, *, with_contextcite: bool
) -> dict[str, Any]:
    timer = Timer(model)
    request = audit_request(case, num_ablations=args.audit_num_ablations)
    layout: RagLayout = build_layout(request, model)
    response_ids = model.encode(case.answer)
    n = layout.num_sources
    scores: dict[str, np.ndarray] = {}
    cost: dict[str, dict[str, float]] = {}
    extra: dict[str, Any] = {}

    def contextcite() -> None:
        run, seconds, tokens = timer.run(
            lambda: contextcite_runner.run_contextcite(
                model.model,
                model.tokenizer,
                case.paragraphs,
                case.question,
                case.answer,
                num_ablations=args.num_ablations,
            )
        )
        scores["contextcite"] = run.weights
        cost["contextcite"] = {"seconds": seconds, "tokens": tokens}
        extra["contextcite_same_response_tokens"] = run.response_ids == list(response_ids)
        extra["contextcite_same_prompt_tokens"] = run.prompt_ids == list(layout.build().ids)
        extra["contextcite_prompt_tokens"] = len(run.prompt_ids)

    def faithaudit() -> None:
        report, seconds, tokens = timer.run(lambda: run_audit(request, model))
        scores["faithaudit_full"] = np.array([s.reliance for s in report.sources])
        scores["leave_one_out"] = scores["faithaudit_full"]
        scores["attention"] = np.array([s.attention for s in report.sources])
        scores["attention_last_layer"] = np.array([s.attention_by_layer[-1] for s in report.sources])
        scores["attention_position_corrected"] = np.array([s.attention_position_ratio for s in report.sources])
        scores["context_ablation_adaptive"] = np.array([s.surrogate_weight for s in report.sources])
        stages = report.cost.by_stage
        cost["faithaudit_full"] = {"seconds": seconds, "tokens": tokens}

        def stage_cost(*names: str) -> dict[str, float]:
            return {
                "seconds": sum(stages[k].seconds for k in names),
                "tokens": sum(stages[k].tokens_processed for k in names),
            }

        cost["attention"] = cost["attention_last_layer"] = stage_cost("full_context")
        cost["attention_position_corrected"] = stage_cost("full_context", "attention_baseline")
        cost["leave_one_out"] = stage_cost("full_context", "leave_one_out")
        cost["context_ablation_adaptive"] = stage_cost(
            "full_context", "leave_one_out", "no_context", "context_ablation"
        )
        extra["audit_by_stage"] = {k: v.model_dump() for k, v in stages.items()}
        extra["adaptive_random_masks"] = stages["context_ablation"].forward_passes
        extra["audit_surrogate_lds"] = report.summary.surrogate_lds
        # Answer flips: what the default audit adds on top (greedy regenerations), timed on their own.
        flips = min(3, n)
        _, flip_seconds, flip_tokens = timer.run(
            lambda: [
                model.generate(layout.without(i).ids, max_new_tokens=args.flip_max_new_tokens)
                for i in top_k(scores["faithaudit_full"], flips)
            ]
        )
        extra["answer_flips"] = {"count": flips, "seconds": flip_seconds, "tokens": flip_tokens}

    def default_audit() -> None:
        """The audit a user gets with no options, timed as one run; its stages come from that same run."""
        if args.controls_only:  # leave-one-out with the default audit's placebos and orders, nothing else
            request = audit_request(case, methods=["leave_one_out"], placebos=args.default_audit_placebos)
        else:
            request = audit_request(case, default=True, placebos=args.default_audit_placebos)
        report, seconds, tokens = timer.run(lambda: run_audit(request, model))
        extra["default_audit_labels"] = {s.id: s.label for s in report.sources}
        scores["default_audit"] = np.array([s.reliance for s in report.sources])
        cost["default_audit"] = cost["default_audit_surrogate"] = {"seconds": seconds, "tokens": tokens}
        if not args.controls_only:
            scores["default_audit_surrogate"] = np.array([s.surrogate_weight for s in report.sources])
        stages = report.cost.by_stage
        extra["default_audit_by_stage"] = {k: v.model_dump() for k, v in stages.items()}
        extra["default_audit_contextcite_stages"] = {
            "seconds": sum(stages[k].seconds for k in CONTEXTCITE_STAGES if k in stages),
            "tokens": sum(stages[k].tokens_processed for k in CONTEXTCITE_STAGES if k in stages),
        }
        masks = report.controls.masks if report.controls else None
        extra["default_audit_masks"] = masks.model_dump() if masks else None
        extra["default_audit_surrogate_lds"] = report.summary.surrogate_lds
        # what a ranking rule over the report needs, replayable offline (benchmarks/choose_ranking.py)
        extra["default_audit_calibration"] = {
            "noise_floor_nats": report.summary.noise_floor_nats,
            "placebo_reliance": report.summary.placebo_reliance,
            "reliance_intervals": [s.reliance_interval for s in report.sources],
            "surrogate_intervals": [s.surrogate_interval for s in report.sources],
        }

    runners = [("contextcite", contextcite), ("default_audit", default_audit)]
    if not args.default_audit_only:
        runners.append(("faithaudit", faithaudit))
    if not with_contextcite:
        runners = runners[1:]
    if index % 2 == 1:
        runners.reverse()
    extra["order"] = [name for name, _ in runners]
    for _, fn in runners:
        fn()

    # The fixed-64 surrogate (the random design an explicit num_ablations gets, without its held-out masks): 64
    # distinct masks, ContextCite's target and solver. The peer's own solver is fit live on the same masks and
    # targets, and the largest weight difference recorded.
    def fixed_ablation() -> np.ndarray:
        base = score_full_context(model, layout, response_ids, with_attention=False)
        masks = interventions.distinct_keep_masks(n, args.num_ablations, keep_probability=0.5, seed=0)
        lp = logprobs(score_masks(model, layout, response_ids, masks, base=base))
        samples["fit_seed"] = 0
        samples["fit_design"] = "distinct"
        samples["fit_logprobs"] = [float(v) for v in lp]
        fit = fit_surrogate(masks, sequence_logit(lp), solver=LassoSolver(0.01), tokens=len(response_ids))
        samples["peer_solver_max_abs_diff"] = peer_solver_difference(masks, lp, len(response_ids), fit.weights)
        return fit.weights

    samples: dict[str, Any] = {}
    full_prompt = layout.build()
    if not args.default_audit_only:
        scores["context_ablation"], seconds, tokens = timer.run(fixed_ablation)
        cost["context_ablation"] = {"seconds": seconds, "tokens": tokens}
        spans = [full_prompt.spans[i] for i in range(n)]
        scores["attention_rollout"], seconds, tokens = timer.run(
            lambda: rollout.rollout_shares(model, full_prompt.ids, response_ids, spans)
        )
        cost["attention_rollout"] = {"seconds": seconds, "tokens": tokens}

    if args.no_eval:
        return case_record(case, index, len(full_prompt.ids), len(response_ids), None, scores, cost, extra, samples)
    # -- evaluation (not counted in any method's cost) ----------------------------------------------------------
    base = score_full_context(model, layout, response_ids, with_attention=False)
    full_lp = base.score.logprob
    # distinct, and none of them in the fixed design's fit set (whose masks are the first ones of seed 0)
    fit_set = interventions.distinct_keep_masks(n, args.num_ablations, keep_probability=0.5, seed=0)
    eval_masks = interventions.distinct_keep_masks(
        n, args.eval_masks, keep_probability=0.5, seed=EVAL_SEED, exclude=fit_set
    )
    eval_lp = logprobs(score_masks(model, layout, response_ids, eval_masks, base=base))
    # The passes a default audit reuses as surrogate samples, scored again so that any stopping rule can be
    # replayed offline on this case (benchmarks/stopping_rules.py): same masks, same targets, no model.
    reused = score_masks(
        model,
        layout,
        response_ids,
        np.concatenate([interventions.leave_one_out_masks(n), interventions.no_context_mask(n)]),
        base=base,
    )
    samples |= {
        "full_logprob": base.score.logprob,
        "loo_logprobs": [float(v) for v in logprobs(reused[:n])],
        "no_context_logprob": float(logprobs(reused[n:])[0]),
        "eval_seed": EVAL_SEED,
        "eval_logprobs": [float(v) for v in eval_lp],
    }
    removal: dict[tuple[int, ...], np.ndarray] = {}
    for s in scores.values():
        for k in KS:
            removal.setdefault(tuple(sorted(top_k(s, k))), np.ones(n, dtype=bool))
    for removed, mask in removal.items():
        mask[list(removed)] = False
    keys = list(removal)
    removed_scores = score_masks(model, layout, response_ids, np.stack([removal[k] for k in keys]), base=base)
    removal_lp = dict(zip(keys, logprobs(removed_scores), strict=True))

    evaluation = Evaluation(full_lp, removal_lp, eval_masks, np.asarray(eval_lp))
    return case_record(case, index, len(full_prompt.ids), len(response_ids), evaluation, scores, cost, extra, samples)


@dataclass(frozen=True)
class Evaluation:
    """A case's evaluation passes: the full log-prob, each top-k removal's, the held-out masks' (for the LDS)."""

    full_lp: float
    removal_lp: dict[tuple[int, ...], float]
    eval_masks: np.ndarray
    eval_lp: np.ndarray


def case_record(
    case: Case,
    index: int,
    prompt_tokens: int,
    response_tokens: int,
    ev: Evaluation | None,
    scores: dict[str, np.ndarray],
    cost: dict[str, dict[str, float]],
    extra: dict[str, Any],
    samples: dict[str, Any],
) -> dict[str, Any]:
    """One case's record; without ``ev`` (``--no-eval``) its methods carry recall but no drops and no LDS."""
    methods: dict[str, Any] = {}
    for name in METHODS:
        if name not in scores:
            continue
        s = np.asarray(scores[name], dtype=np.float64)
        # the default audit ranks by reliance; its LDS is that of the surrogate it reports
        fit = np.asarray(scores.get("default_audit_surrogate", s), dtype=np.float64) if name == "default_audit" else s
        drops = None if ev is None else {
            str(k): ev.full_lp - float(ev.removal_lp[tuple(sorted(top_k(s, k)))]) for k in KS
        }  # fmt: skip
        methods[name] = {
            "scores": [round(float(v), 6) for v in s],
            **{f"recall_at_{k}": recall_at_k(s, case.gold, k) for k in KS},
            "topk_logprob_drop": drops,
            "lds": None if ev is None else lds(fit, ev.eval_masks, ev.eval_lp),
            "seconds": cost[name]["seconds"],
            "tokens_processed": int(cost[name]["tokens"]),
        }
    return {
        "id": case.id,
        "index": index,
        "num_sources": len(next(iter(scores.values()))),
        "gold": case.gold,
        "prompt_tokens": prompt_tokens,
        "response_tokens": response_tokens,
        "logprob_full": None if ev is None else ev.full_lp,
        "methods": methods,
        **extra,
        "samples": samples,
        "torch_threads": torch_threads(),
        "load_average": os.getloadavg()[0],
    }


# -- summary ---------------------------------------------------------------------------------------------
def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def default_audit_composed(record: dict[str, Any]) -> tuple[float, float]:
    """(seconds, tokens) of a default audit (64 fixed masks + 16 held-out ones) over ContextCite's, composed from
    stages measured in this process: the audit's full-context, leave-one-out and no-context stages plus the fixed-64
    fit (which includes one plain full pass: a slight overestimate) scaled by 80/64."""
    stages = record["audit_by_stage"]
    other = [stages[k] for k in ("full_context", "leave_one_out", "no_context") if k in stages]
    fixed = record["methods"]["context_ablation"]
    cc = record["methods"]["contextcite"]
    samples = record.get("samples") or {}
    count = len(samples.get("fit_logprobs") or samples.get("fit_logit_probs") or [0] * 64)
    scale = (count + interventions.held_out_count(count)) / count
    seconds = sum(s["seconds"] for s in other) + fixed["seconds"] * scale
    tokens = sum(s["tokens_processed"] for s in other) + fixed["tokens_processed"] * scale
    return seconds / cc["seconds"], tokens / cc["tokens_processed"]


def default_audit_ratios(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of per-case ratios of the default audit, timed as one run, over ContextCite in the same process:
    the stages doing ContextCite's work (CONTEXTCITE_STAGES, from that run) and the whole audit. Never composed.
    Each median comes with its order-statistic interval (``paired_stats.median_interval``: with 4 to 6 cases that is
    [min, max], covering 87.5% to 96.9%), and recall@2 and LDS with the paired difference to ContextCite's."""
    rows = [r for r in records if "contextcite" in r["methods"] and "default_audit" in r["methods"]]

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    cc = [r["methods"]["contextcite"] for r in rows]
    work = [r["default_audit_contextcite_stages"] for r in rows]
    total = [r["methods"]["default_audit"] for r in rows]
    per_case = {
        "time_ratio_default_audit_vs_contextcite": [w["seconds"] / c["seconds"] for w, c in zip(work, cc, strict=True)],
        "time_ratio_default_audit_total_vs_contextcite": [
            t["seconds"] / c["seconds"] for t, c in zip(total, cc, strict=True)
        ],
        "tokens_ratio_default_audit_vs_contextcite": [
            w["tokens"] / c["tokens_processed"] for w, c in zip(work, cc, strict=True)
        ],
        "tokens_ratio_default_audit_total_vs_contextcite": [
            t["tokens_processed"] / c["tokens_processed"] for t, c in zip(total, cc, strict=True)
        ],
    }
    return {
        **{key: median(values) for key, values in per_case.items()},
        "default_audit_ratio_intervals": {key: median_interval(values) for key, values in per_case.items()},
        "default_audit_paired_vs_contextcite": {
            key: paired_difference([t[key] for t in total], [c[key] for c in cc]) for key in ("recall_at_2", "lds")
        },
        "default_audit_cases": len(rows),
        "default_audit_stage_seconds_median": {
            k: median([r["default_audit_by_stage"][k]["seconds"] for r in rows if k in r["default_audit_by_stage"]])
            for k in dict.fromkeys(k for r in rows for k in r["default_audit_by_stage"])
        },
    }


def summarize(records: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for name in METHODS:
        rows = [r["methods"][name] for r in records if name in r["methods"]]
        if not rows:
            continue
        methods[name] = {
            **{f"recall_at_{k}": _mean([r[f"recall_at_{k}"] for r in rows]) for k in KS},
            "topk_logprob_drop": {
                str(k): _mean([(r["topk_logprob_drop"] or {}).get(str(k)) for r in rows]) for k in KS
            },
            "lds": _mean([r["lds"] for r in rows]),
            "lds_undefined_cases": sum(r["lds"] is None for r in rows),
            "seconds_median": statistics.median(r["seconds"] for r in rows),
            "tokens_processed_median": statistics.median(r["tokens_processed"] for r in rows),
            "cases": len(rows),
        }
    ratios = [
        r["methods"]["faithaudit_full"]["seconds"] / r["methods"]["contextcite"]["seconds"]
        for r in records
        if "contextcite" in r["methods"] and "faithaudit_full" in r["methods"]
    ]
    token_ratios = [
        r["methods"]["faithaudit_full"]["tokens_processed"] / r["methods"]["contextcite"]["tokens_processed"]
        for r in records
        if "contextcite" in r["methods"] and "faithaudit_full" in r["methods"]
    ]
    flips = [r["answer_flips"]["seconds"] for r in records if "answer_flips" in r]
    composed = [default_audit_composed(r) for r in records if "contextcite" in r["methods"] and "audit_by_stage" in r]
    return {
        "cases": len(records),
        **meta,
        "methods": methods,
        "time_ratio_full_vs_contextcite": statistics.median(ratios) if ratios else None,
        "time_ratios_per_case": [round(x, 4) for x in ratios],
        "tokens_ratio_full_vs_contextcite": statistics.median(token_ratios) if token_ratios else None,
        "time_ratio_default_audit_vs_contextcite_composed": statistics.median(c[0] for c in composed)
        if composed
        else None,
        "tokens_ratio_default_audit_vs_contextcite_composed": statistics.median(c[1] for c in composed)
        if composed
        else None,
        **default_audit_ratios(records),
        "answer_flip_seconds_median": statistics.median(flips) if flips else None,
        "adaptive_random_masks": [r.get("adaptive_random_masks") for r in records],
        "prompt_tokens_median": statistics.median(r["prompt_tokens"] for r in records) if records else None,
    }


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python": platform.python_version(),
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def warm_up(model: ModelAdapter, case: Case, *, with_contextcite: bool) -> None:
    """One pass of each kind (full with attention, cached, ContextCite's), none of it measured."""
    request = audit_request(case, methods=["attention", "leave_one_out"])
    layout = build_layout(request, model)
    response_ids = model.encode(case.answer)
    base = score_full_context(model, layout, response_ids, with_attention=True)
    score_masks(model, layout, response_ids, interventions.leave_one_out_masks(layout.num_sources)[:2], base=base)
    if with_contextcite:
        contextcite_runner.run_contextcite(
            model.model, model.tokenizer, case.paragraphs, case.question, case.answer, num_ablations=2
        )


def resummarize(args: argparse.Namespace) -> dict[str, Any]:
    """Rebuild OUT from its .cases.jsonl (after a change to the summary), keeping the run's metadata."""
    old = json.loads(args.json.read_text(encoding="utf-8")) if args.json.is_file() else {}
    meta = {k: v for k, v in old.items() if k in ("dataset", "model", "model_revision", "machine",
                                                  "contextcite_version", "settings", "started", "updated")}  # fmt: skip
    summary = summarize(read_records(args.json.with_suffix(".cases.jsonl")), meta)
    args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def run(args: argparse.Namespace) -> dict[str, Any]:
    from faithaudit.audits.model.registry import load_adapter
    from faithaudit.config import get_settings

    settings = get_settings()
    cases = load_cases(args.dataset, args.data_dir, args.skip + args.limit, args.max_docs)[args.skip :]
    with_cc = not args.no_contextcite
    if with_cc:
        contextcite_runner.import_context_cite()
    model = load_adapter(args.model, cache_dir=settings.cache_dir, threads=args.threads or settings.torch_threads)
    cases_path = args.json.with_suffix(".cases.jsonl")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    records = read_records(cases_path) if args.resume else []
    if not args.resume:
        cases_path.write_text("", encoding="utf-8")
    done = {r["id"] for r in records}
    meta = {
        "dataset": args.dataset,
        "model": args.model,
        "model_revision": model.revision,
        "machine": machine_info(),
        "contextcite_version": contextcite_runner.contextcite_version() if with_cc else None,
        "settings": {
            "limit": args.limit,
            "skip": args.skip,
            "max_docs": args.max_docs,
            "num_ablations_contextcite_and_fixed": args.num_ablations,
            "audit_num_ablations": args.audit_num_ablations,
            "default_audit_only": args.default_audit_only,
            "controls_only": args.controls_only,
            "no_eval": args.no_eval,
            "eval_masks": args.eval_masks,
            "prompt_template": "Context: {context}\\n\\nQuery: {query}",
        },
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    todo = [(args.skip + i, c) for i, c in enumerate(cases) if c.id not in done]
    if todo:
        warm_up(model, todo[0][1], with_contextcite=with_cc)
    for i, case in todo:
        t0 = time.perf_counter()
        record = run_case(model, case, i, args, with_contextcite=with_cc)
        with cases_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        records.append(record)
        summary = summarize(records, meta | {"updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        full = record["methods"].get("faithaudit_full") or record["methods"]["default_audit"]
        cc = record["methods"].get("contextcite")
        print(
            f"[{len(records)}/{len(cases)}] {case.id}: {record['num_sources']} sources, "
            f"{record['prompt_tokens']} prompt tokens; audit {full['seconds']:.1f}s r@2 {full['recall_at_2']:.2f}"
            + (f"; contextcite {cc['seconds']:.1f}s r@2 {cc['recall_at_2']:.2f}" if cc else "")
            + f"; adaptive masks {record.get('adaptive_random_masks')}; case {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    summary = summarize(records, meta | {"updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _or_na(value: float | None, width: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.3f}"


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\n{summary['dataset']}: {summary['cases']} cases, model {summary['model']}")
    head = f"{'method':<26} {'r@1':>6} {'r@2':>6} {'drop@1':>7} {'drop@2':>7} {'lds':>6} {'sec':>7} {'tokens':>8}"
    print(head)
    print("-" * len(head))
    for name, m in summary["methods"].items():
        lds_v, d1, d2 = (_or_na(v, w) for v, w in ((m["lds"], 6), *((m["topk_logprob_drop"][k], 7) for k in "12")))
        print(
            f"{name:<26} {m['recall_at_1']:6.3f} {m['recall_at_2']:6.3f} {d1} {d2} {lds_v} {m['seconds_median']:7.2f} "
            f"{m['tokens_processed_median']:8.0f}"
        )
    for key in (
        "time_ratio_full_vs_contextcite",
        "time_ratio_default_audit_vs_contextcite_composed",
        "time_ratio_default_audit_vs_contextcite",
        "time_ratio_default_audit_total_vs_contextcite",
    ):
        ratio = summary.get(key)
        interval = (summary.get("default_audit_ratio_intervals") or {}).get(key)
        around = ""
        if interval is not None:
            low, high, coverage, cases = (interval[k] for k in ("low", "high", "coverage", "cases"))
            around = f", [{low:.3f}, {high:.3f}] covering {coverage:.1%} of {cases} cases"
        print(f"{key} (median of per-case ratios): {ratio if ratio is None else round(ratio, 3)}{around}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(FILES), required=True)
    p.add_argument("--limit", type=int, default=20, help="number of cases (default 20)")
    p.add_argument("--skip", type=int, default=0, help="skip the first N cases (--skip 20: a dev split)")
    p.add_argument("--max-docs", type=int, default=None, help="keep the gold paragraphs plus the first distractors")
    p.add_argument("--resume", action="store_true", help="skip the cases already in OUT's .cases.jsonl")
    p.add_argument("--json", type=Path, required=True, metavar="OUT", help="summary JSON (cases go to .cases.jsonl)")
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help=f"data folder (env {DATA_ENV})")
    p.add_argument("--model", default=MODEL_NAME)
    p.add_argument("--threads", type=int, default=None, help="torch threads for both tools")
    p.add_argument("--num-ablations", type=int, default=64, help="ContextCite's and the fixed surrogate's masks")
    p.add_argument(
        "--audit-num-ablations", type=int, default=None, help="faithaudit_full's num_ablations (default: adaptive)"
    )
    p.add_argument("--eval-masks", type=int, default=32, help="shared held-out masks per case for the LDS")
    p.add_argument("--no-contextcite", action="store_true", help="run without ContextCite")
    p.add_argument(
        "--default-audit-only",
        action="store_true",
        help="ContextCite and the default audit only (timed as one run each), with their evaluation",
    )
    p.add_argument(
        "--no-eval", action="store_true", help="no evaluation passes: recall only (no drops, no LDS, no samples)"
    )
    p.add_argument(
        "--controls-only",
        action="store_true",
        help="the default audit's leave-one-out, placebos and orders only (no surrogate, attention or flips)",
    )
    p.add_argument("--summary-only", action="store_true", help="rebuild OUT from OUT's .cases.jsonl, run nothing")
    p.add_argument(
        "--default-audit-placebos", type=int, default=None, help="the default audit with this many placebos instead"
    )
    p.add_argument(
        "--flip-max-new-tokens", type=int, default=64, help="answer-flip regenerations (the audit default: 64)"
    )
    args = p.parse_args(argv)
    if not (args.data_dir / FILES[args.dataset]).is_file():
        p.error(f"no data at {args.data_dir / FILES[args.dataset]} (set --data-dir or {DATA_ENV})")
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    print_summary(resummarize(args) if args.summary_only else run(args))
    print(f"\nwrote {args.json} and {args.json.with_suffix('.cases.jsonl')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
