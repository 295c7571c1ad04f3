"""What the calibration controls cost: the default audit (16 placebos, 3 document orders, answer flips above the
noise floor) against the same audit with the controls off (no placebos, one order, flips on the top 3 sources,
the previous defaults), on the ``make bench`` case (a 10-document HotpotQA record, ~1,300 prompt tokens).

Both run in this one process, alternating which goes first, ``--repeats`` times; the table gives forward passes,
tokens fed (a reused cached prefix is not counted) and the median seconds, and the ratios. Per-stage figures of
the default audit say where the extra cost goes.

    PYTHONPATH=. python benchmarks/controls_cost.py --repeats 3 --json benchmarks/results/controls_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from engine_cost import DEFAULT_DATA, MODEL_NAME, Measure, build_case, timed  # noqa: E402

from faithaudit.audits.run import run_audit  # noqa: E402

CONTROLS_OFF = {"placebos": 0, "orders": 1, "answer_flip_top_k": 3}


def variants(case) -> dict:
    audit = case.request.audit
    default = case.request.model_copy(
        update={
            "audit": audit.model_copy(
                update={"num_ablations": 64, "answer_flip_top_k": 10, "placebos": 16, "orders": 3}
            )
        }  # fmt: skip
    )
    off = case.request.model_copy(update={"audit": audit.model_copy(update={"num_ablations": 64, **CONTROLS_OFF})})
    return {"default": default, "controls_off": off}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from faithaudit.audits.model.registry import load_adapter
    from faithaudit.config import get_settings

    model = load_adapter(MODEL_NAME, cache_dir=get_settings().cache_dir, threads=args.threads)
    case = build_case(model, DEFAULT_DATA, 64)
    requests = variants(case)
    measures = {name: Measure() for name in requests}
    stages: dict[str, dict] = {}
    run_audit(requests["controls_off"], model)  # warm-up
    for r in range(args.repeats):
        for name in list(requests) if r % 2 == 0 else list(requests)[::-1]:
            report = timed(model, measures[name], lambda name=name: run_audit(requests[name], model))
            stages[name] = {k: v.model_dump() for k, v in report.cost.by_stage.items()}
    d, o = measures["default"], measures["controls_off"]
    result = {
        "case": case.source,
        "prompt_tokens": case.prompt_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "default": d.as_json() | {"by_stage": stages["default"]},
        "controls_off": o.as_json() | {"by_stage": stages["controls_off"]},
        "ratio_passes": round(d.passes / o.passes, 3),
        "ratio_tokens": round(d.tokens / o.tokens, 3),
        "ratio_seconds_median": round(d.median / o.median, 3),
        "ratio_seconds_per_repeat": [round(a / b, 3) for a, b in zip(d.seconds, o.seconds, strict=True)],
    }
    result["ratio_seconds_median_of_ratios"] = round(statistics.median(result["ratio_seconds_per_repeat"]), 3)
    print(json.dumps({k: v for k, v in result.items() if k not in ("default", "controls_off")}, indent=2))
    for name in ("default", "controls_off"):
        m = measures[name]
        print(f"{name}: {m.passes} passes, {m.tokens} tokens, median {m.median:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
