"""Fewer calibration controls, replayed exactly on recorded calibration rows (no model): the labels an audit with
k placebos and m document orders would give, and whether the calibration acceptance still holds.

``calibration.py`` records each case's controls raw (``controls_raw``): every placebo's reliance and whether its
greedy answer kept the answer span, each order's leave-one-out reliance, the attention ratios and the flips. The
placebos and the orders are drawn in sequence from their own seeded generators, so the first k placebos and the
first m orders of a run are exactly those of a run with k placebos and m orders. This replays the label rule
(``audits.report.labels.label_source``) with the noise floor of the first k placebos and the intervals over the first
m orders (m = 1: reliance +- floor, as without orders), and summarises each part as ``calibration.py`` does.

One thing is not replayed exactly: answer flips are checked for the sources above the run's own floor; where a
smaller floor would have checked a source the run did not, and flips count, the row is marked ``approximate`` (its
flip is taken as unchanged). Likewise for orders: rows recorded since the orders stage re-scores only the sources an
order could move (``noise.order_sensitive``) hold NaN for the others; where a smaller floor would have re-scored
one of them, the row is ``approximate`` (reliance +- floor stands in). The configuration the rows ran with must give
back their recorded labels: checked.

    PYTHONPATH=. .venv/bin/python benchmarks/controls_replay.py benchmarks/results/calibration_fictional_raw.jsonl \\
        --json benchmarks/results/controls_replay.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from calibration import summarise  # noqa: E402

from faithaudit.api_schemas import LabelThresholds  # noqa: E402
from faithaudit.audits.noise import NoiseFloor, floor_intervals, order_intervals, order_sensitive  # noqa: E402
from faithaudit.audits.report.labels import label_source  # noqa: E402

PLACEBOS = (4, 8, 12, 16)
ORDERS = (1, 2, 3)


def replay(row: dict, placebos: int, orders: int) -> tuple[dict[str, str | None], float, bool, bool]:
    """The labels of ``row`` with its first ``placebos`` placebos and ``orders`` orders; the floor; whether flips
    counted; whether the replay is approximate."""
    raw = row["controls_raw"]
    rules = LabelThresholds(**raw["label_rules"])
    reliance = np.asarray(raw["reliance"], dtype=np.float64)
    floor = NoiseFloor.of(np.asarray(raw["placebo_reliance"][:placebos])).floor
    rows = np.asarray(raw["order_reliance"] or [], dtype=np.float64)[:orders]  # null -> NaN: not re-scored
    by_orders = len(rows) and orders > 1
    intervals = order_intervals(rows, floor) if by_orders else floor_intervals(reliance, floor)
    counted = _flips_counted(raw, placebos, rules)
    flips = {int(i): changed for i, changed in raw["flip_changed"].items()}
    approximate = counted and any(r > floor and i not in flips for i, r in enumerate(reliance))
    sensitive = order_sensitive(reliance, floor, distracting=rules.distracting)
    approximate |= bool(by_orders and (np.isnan(rows).any(axis=0) & sensitive).any())  # a smaller floor's rescore
    labels = {}
    for i, sid in enumerate(raw["source_ids"]):
        verdict = label_source(
            reliance=float(reliance[i]),
            interval=intervals[i],
            floor=floor,
            attention_ratio=raw["attention_ratio"][i],
            positional=raw["positional"],
            flip_counted=counted and bool(flips.get(i)),
            rules=rules,
        )
        labels[sid] = verdict.label
    return labels, floor, counted, approximate


def _flips_counted(raw: dict, placebos: int, rules: LabelThresholds) -> bool:
    """``stages.flips._stability``: the margin holds and at most the allowed share of placebos flip the answer."""
    if not raw["margin_holds"]:
        return False
    keeps = raw["placebo_keeps_answer"][:placebos]
    return float(np.mean([not kept for kept in keeps])) <= rules.max_placebo_flip_rate


def check_recorded(rows: list[dict]) -> int:
    """Rows whose replay at their own configuration differs from their recorded labels (must be 0)."""
    bad = 0
    for row in rows:
        raw = row["controls_raw"]
        orders = len(raw["order_reliance"]) if raw["order_reliance"] else 1
        labels, *_ = replay(row, len(raw["placebo_reliance"]), orders)
        bad += labels != row["labels"]
    return bad


def tokens_share(rows: list[dict], placebos: int, orders: int) -> float:
    """Median over rows of the tokens fed with k placebos and m orders over the recorded run's (placebo and order
    passes scale with their counts; the placebos' decode steps are counted with them)."""
    shares = []
    for row in rows:
        by = row["tokens_by_stage"]
        raw = row["controls_raw"]
        k0, m0 = len(raw["placebo_reliance"]), len(raw["order_reliance"] or [0])
        total = sum(by.values())
        cut = by.get("placebos", 0) * (1 - placebos / k0) + by.get("orders", 0) * (1 - (orders - 1) / max(m0 - 1, 1))
        shares.append((total - cut) / total)
    return float(np.median(shares))


def part_of(rows: list[dict]) -> str:
    return "fictional" if rows and rows[0]["gold"] == ["fact"] else "dataset"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", type=Path, help="calibration JSONL files recorded with controls_raw")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out = {}
    for path in args.rows:
        rows = [r for r in map(json.loads, path.read_text().splitlines()) if "controls_raw" in r]
        part = part_of(rows)
        configs = {}
        for k in PLACEBOS:
            for m in ORDERS:
                replayed = [(r, *replay(r, k, m)) for r in rows]
                relabelled = [
                    r | {"labels": labels, "noise_floor_nats": floor, "flips_counted": counted}
                    for r, labels, floor, counted, _ in replayed
                ]
                summary = summarise(part, relabelled)
                same = [lab == r["labels"][sid] for r, labels, *_ in replayed for sid, lab in labels.items()]
                configs[f"placebos={k},orders={m}"] = summary | {
                    "labels_as_recorded_share": round(float(np.mean(same)), 4),
                    "approximate_rows": sum(a for *_, a in replayed),
                    "tokens_vs_recorded": round(tokens_share(rows, k, m), 3),
                }
        out[path.name] = {"rows": len(rows), "recorded_labels_mismatch": check_recorded(rows), "configs": configs}
        _print(path.name, out[path.name])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(v["recorded_labels_mismatch"] == 0 for v in out.values()) else 1


def _print(name: str, result: dict) -> None:
    print(f"{name}: {result['rows']} rows, recorded labels reproduced: {result['recorded_labels_mismatch'] == 0}")
    for config, s in result["configs"].items():
        keys = [k for k in s if k.endswith("_share") or k.startswith("decisive_") or k == "accepted"]
        keys = [k for k in keys if k != "flips_counted_share"]
        figures = ", ".join(f"{k} {s[k]:.3f}" if isinstance(s[k], float) else f"{k} {s[k]}" for k in keys)
        floor = s["noise_floor_nats_median"]
        print(f"  {config:22s} tokens {s['tokens_vs_recorded']:.2f}  floor {floor:.2f}  {figures}")


if __name__ == "__main__":
    raise SystemExit(main())
