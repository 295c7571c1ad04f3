"""Two checkouts of faithaudit under the same API load, side by side: ``api_load.py`` of each, one run at a time,
alternating, so that the machine's drift over the minutes falls on both alike.

Each round runs ``benchmarks/api_load.py --runs 1`` from the base checkout, then from this one (the order flips
every round), with the same options (default: those of ``make bench-api``). Each run starts its own API and
worker from its own checkout (``api_load`` starts them in its repository). Prints each run's submit and read p99,
the median p99 of each side and their ratio (this / base); ``--json OUT`` keeps every figure.

    git worktree add /tmp/base <commit>
    PYTHONPATH=. python benchmarks/api_compare.py /tmp/base --rounds 5 --json benchmarks/results/api_compare.json

``--fresh-cache`` gives every run a model cache of its own, empty at the start (``FAITHAUDIT_CACHE_DIR``): its API
processes start before the worker has cached the model, and the burst is the first after the worker did, as on a
fresh deployment (the worker dequantizes the model first, ~35 s a run).

``--base-extra`` gives the base side api_load options of its own: with this checkout as the base, one option
against another (``api_compare.py . --base-extra="--http httpx"``: the load client's library, side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD_ARGS = ["--postgres", "--api-workers", "2", "--torch-threads", "1", "--ramp", "1", "--runs", "1"]


def _git_head(checkout: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=checkout, capture_output=True, text=True).stdout
    return done.stdout.strip() + ("+changes" if dirty.strip() else "")


def one_run(checkout: Path, extra: list[str], *, fresh_cache: bool = False) -> dict:
    """``api_load.py --runs 1`` of ``checkout``, its own code on both sides of the socket; its JSON figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        if fresh_cache:
            env["FAITHAUDIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        cmd = [sys.executable, str(checkout / "benchmarks" / "api_load.py"), *LOAD_ARGS, *extra, "--json", str(out)]
        done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
        if not out.is_file():
            raise RuntimeError(f"api_load.py in {checkout} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        fig = json.loads(out.read_text())
    return {
        "submit_p99_ms": fig["median_p99_ms"]["submit"],
        "read_p99_ms": fig["median_p99_ms"]["read"],
        "errors": fig["errors"],
        "cpu": fig["runs"][0]["cpu_during_load"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="the other checkout (a git worktree of the base commit)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--fresh-cache", action="store_true", help="each run on an empty model cache of its own")
    ap.add_argument("--base-extra", default="", help="api_load.py options for the base side only (one string)")
    args, extra = ap.parse_known_args()  # any other option goes to api_load.py on both sides
    args.extra = [a for a in extra if a != "--"]
    sides = {"base": args.base.resolve(), "this": REPO}
    runs: dict[str, list[dict]] = {"base": [], "this": []}
    for r in range(args.rounds):
        order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
        for side in order:
            extra = args.extra + (args.base_extra.split() if side == "base" else [])
            fig = one_run(sides[side], extra, fresh_cache=args.fresh_cache)
            runs[side].append(fig)
            print(
                f"round {r + 1} {side:<4}: submit p99 {fig['submit_p99_ms']:.1f} ms, read p99 "
                f"{fig['read_p99_ms']:.1f} ms, errors {fig['errors']}, API CPU {fig['cpu']['api_cpu_s']} s",
                flush=True,
            )
    summary = {}
    for kind in ("submit", "read"):
        med = {side: statistics.median(f[f"{kind}_p99_ms"] for f in runs[side]) for side in runs}
        summary[kind] = {"median_p99_ms": med, "ratio_this_vs_base": med["this"] / med["base"]}
        print(
            f"{kind}: median p99 base {med['base']:.1f} ms, this {med['this']:.1f} ms, "
            f"ratio {med['this'] / med['base']:.3f} ({args.rounds} runs each)"
        )
    if args.json:
        heads = {side: _git_head(path) for side, path in sides.items()}
        args.json.write_text(
            json.dumps(
                {
                    "load": LOAD_ARGS + args.extra,
                    "base_extra": args.base_extra,
                    "fresh_cache": args.fresh_cache,
                    "commits": heads,
                    "runs": runs,
                    "summary": summary,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
