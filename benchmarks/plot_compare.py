"""Plot compare_contextcite.py results: recall@1/@2 and median seconds per method, one row per dataset.

    python benchmarks/plot_compare.py benchmarks/results/hotpotqa.json benchmarks/results/musique.json \\
        --out benchmarks/results/compare_contextcite.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(13, 3.6 * len(results)), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        names = list(res["methods"])
        ms = [res["methods"][n] for n in names]
        x = range(len(names))
        ax = row[0]
        ax.bar([i - 0.2 for i in x], [m["recall_at_1"] or 0 for m in ms], width=0.4, label="recall@1")
        ax.bar([i + 0.2 for i in x], [m["recall_at_2"] or 0 for m in ms], width=0.4, label="recall@2")
        ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.25)
        ax.set_title(f"{res['dataset']}: recall of the gold paragraphs ({res['cases']} cases)")
        ax.legend(fontsize=8, ncol=2, loc="upper right")
        ax = row[1]
        ax.bar(list(x), [m["seconds_median"] for m in ms], color="tab:gray")
        ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("seconds (median per case)")
        ratio = res.get("time_ratio_full_vs_contextcite")
        default = res.get("time_ratio_default_audit_vs_contextcite_composed")
        note = "" if ratio is None else f"\nfull audit, adaptive / contextcite = {ratio:.2f}"
        note += "" if default is None else f"; default audit (64 fixed, composed) = {default:.2f}"
        ax.set_title(f"{res['dataset']}: cost per case{note}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def markdown_table(res: dict) -> str:
    """The results of one dataset as a Markdown table."""
    lines = [
        "| method | recall@1 | recall@2 | drop@1 (nats) | drop@2 (nats) | LDS | seconds (median) | tokens (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(v, digits=3):
        return "n/a" if v is None else f"{v:.{digits}f}"

    for name, m in res["methods"].items():
        drop = m["topk_logprob_drop"]
        lines.append(
            f"| `{name}` | {f(m['recall_at_1'])} | {f(m['recall_at_2'])} | {f(drop['1'], 2)} | {f(drop['2'], 2)} "
            f"| {f(m['lds'])} | {f(m['seconds_median'], 1)} | {m['tokens_processed_median']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="summary JSON files from compare_contextcite.py")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    results = [json.loads(p.read_text(encoding="utf-8")) for p in args.results if p.is_file()]
    if not results:
        parser.error("none of the result files exists")
    plot(results, args.out)
    for res in results:
        ratio = res.get("time_ratio_full_vs_contextcite")
        default = res.get("time_ratio_default_audit_vs_contextcite_composed")
        print(f"\n{res['dataset']}: {res['cases']} cases, time_ratio_full_vs_contextcite = {ratio}, ", end="")
        print(f"time_ratio_default_audit_vs_contextcite_composed = {default}\n")
        print(markdown_table(res))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
