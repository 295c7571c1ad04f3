"""One audit over one or two workers on this machine: the same request through the real service (API, Redis,
SQLite, Celery workers), each configuration timed from the audit's start to its report, and the reports compared.

Configurations (``--configs``, default all three, run in this order each round):
- ``one_1t``: one worker, FAITHAUDIT_TORCH_THREADS=1, no shards;
- ``one_2t``: one worker, 2 torch threads, no shards;
- ``two_1t``: two workers with 1 torch thread each, FAITHAUDIT_SHARD_PASSES=1 (every audit with two units or more
  is split into shards).
Wall time is the store's ``finished_at - started_at`` of the audit (the model is loaded, and warmed up on a small
audit, before it starts). The figures: each configuration's median seconds and its ratio to ``one_1t``, the shards
each worker stored, and whether the report equals ``one_1t``'s (labels, ranks and flags exactly, floats within
1e-5).

    PYTHONPATH=. .venv/bin/python benchmarks/fanout.py /tmp/tau/tau0_request.json \\
        --json benchmarks/results/fanout_tau0.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from service_harness import create_key, service_env, start_api, start_worker, wait_for  # noqa: E402
from test_golden_reports import differences  # noqa: E402

CONFIGS = {
    "one_1t": {"workers": 1, "threads": 1, "shard_passes": 0},
    "one_2t": {"workers": 1, "threads": 2, "shard_passes": 0},
    "two_1t": {"workers": 2, "threads": 1, "shard_passes": 1},
}
WARM_UP = {
    "pipeline": {"kind": "rag", "documents": [{"id": "a", "text": "Paris is in France."}, {"id": "b", "text": "Hi."}]},
    "query": "Where is Paris?",
    "response": "In France.",
    "audit": {"methods": ["leave_one_out"], "placebos": 0, "orders": 1, "answer_flip_top_k": 0},
}


def run_config(name: str, request: dict, workdir: Path) -> dict:
    spec = CONFIGS[name]
    url = f"sqlite:///{workdir / f'{name}.db'}"
    env = service_env(
        workdir / name,
        database_url=url,
        broker_url="redis://127.0.0.1:6379/0",
        FAITHAUDIT_TORCH_THREADS=str(spec["threads"]),
        FAITHAUDIT_SHARD_PASSES=str(spec["shard_passes"]),
        FAITHAUDIT_LEASE_SECONDS="30",
    )
    key = create_key(env, "bench")
    api, base = start_api(env, workdir / f"{name}-api.log")
    workers = [start_worker(env, workdir / f"{name}-worker{i}.log") for i in range(spec["workers"])]
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            for _ in workers:  # each worker loads the model on a small audit first
                warm = client.post("/v1/audits", json=WARM_UP).json()["id"]
                wait_for(client, warm, lambda b: b["status"] in ("succeeded", "failed"), timeout=600)
            audit_id = client.post("/v1/audits", json=request).json()["id"]
            done = wait_for(
                client, audit_id, lambda b: b["status"] in ("succeeded", "failed"), timeout=3600, interval=1
            )
        if done["status"] != "succeeded":
            raise RuntimeError(f"{name}: {done.get('error')}")
        return _measured(url, audit_id, done["report"])
    finally:
        for proc in (*workers, api):
            proc.stop()


def _ended(body: dict) -> bool:
    return body["status"] in ("succeeded", "failed")


def _measured(url: str, audit_id: str, report: dict) -> dict:
    from faithaudit.store import Store

    store = Store(url)
    row = store.get_audit(audit_id)
    shards = store.shards(audit_id)
    store.dispose()
    per_worker: dict[str, int] = {}
    for s in shards:
        per_worker[s.worker] = per_worker.get(s.worker, 0) + 1
    return {
        "seconds": (row.finished_at - row.started_at).total_seconds(),
        "shards": [{"idx": s.idx, "stages": s.stages, "attempts": s.attempts} for s in shards],
        "shards_per_worker": sorted(per_worker.values(), reverse=True),
        "report": report,
    }


def compare(reference: dict, report: dict) -> dict:
    ref, rep = json.loads(json.dumps(reference)), json.loads(json.dumps(report))
    ref_cost, rep_cost = ref.pop("cost"), rep.pop("cost")
    diffs = differences(ref, rep, tolerance=1e-5)
    return {
        "labels_equal": [s["label"] for s in ref["sources"]] == [s["label"] for s in rep["sources"]],
        "differences_beyond_1e-5": diffs[:20],
        "forward_passes": rep_cost["forward_passes"],
        "tokens_processed": rep_cost["tokens_processed"],
        "workers": rep_cost.get("workers", 1),
        "reference_forward_passes": ref_cost["forward_passes"],
        "reference_tokens_processed": ref_cost["tokens_processed"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request", type=Path)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    request = json.loads(args.request.read_text())
    names = args.configs.split(",")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        for r in range(args.rounds):
            for name in names:
                measured = run_config(name, request, Path(tmp) / f"round{r}")
                runs[name].append(measured)
                print(
                    f"round {r} {name}: {measured['seconds']:.1f} s, shards per worker {measured['shards_per_worker']}"
                )
    reference = runs[names[0]][0]["report"]
    base = statistics.median(m["seconds"] for m in runs[names[0]])
    summary = {}
    for name in names:
        seconds = statistics.median(m["seconds"] for m in runs[name])
        summary[name] = {
            **CONFIGS[name],
            "seconds_median": round(seconds, 1),
            "seconds": [round(m["seconds"], 1) for m in runs[name]],
            f"ratio_to_{names[0]}": round(seconds / base, 3),
            "shards": runs[name][-1]["shards"],
            "shards_per_worker": [m["shards_per_worker"] for m in runs[name]],
            "equal_to_reference": [compare(reference, m["report"]) for m in runs[name]],
        }
        print(f"{name:8s} median {seconds:7.1f} s  ratio {seconds / base:.3f}")
    if args.json:
        out = {"request": str(args.request), "rounds": args.rounds, "cpus": _cpus(), "configs": summary}
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
