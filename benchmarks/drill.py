"""The kill-and-restart drill: a stream of audits, corpus builds and gate runs while workers are SIGKILLed and the
broker restarts empty, at seeded times. Nothing may be lost, stuck or written twice.

Starts, on this machine only, a private ``redis-server`` (no persistence, so a restart loses every message), a
fresh SQLite store (or ``--database-url``), the API and ``--workers`` Celery workers (leases of ``--lease``
seconds, a reaper every second). Over ``--submit-seconds`` it submits ``--audits`` small audits (the demo case,
``num_ablations`` 4, no placebos, one order), ``--corpora`` corpus builds and ``--gates`` one-case gate runs; over
``--chaos-seconds`` it SIGKILLs a random worker ``--kills`` times (a new worker replaces it a second later) and
restarts the broker ``--restarts`` times (down 0.5 to 2 s). Then it waits, up to ``--deadline`` seconds from the
start, for everything to end, and prints:

- submitted / succeeded / failed with a reason / lost (accepted, then gone) / stuck (not ended by the deadline) /
  written twice (an audit's ``succeeded`` event twice; a corpus with more documents than it was given);
- recovery after a worker kill: seconds from the kill until the work that worker held is back in the queue
  (re-sent) or running on another worker; after a broker restart: seconds until every queued item is re-sent.
  p50 / p99 / max, against the target ``2 leases + reaper interval``.

It exits 1 on any loss, stuck item, double write or refused submit, or a recovery p99 over the target. (An
audit's ``succeeded`` event twice cannot happen while only the lease holder finishes it: the check watches that
invariant.)

    PYTHONPATH=. .venv/bin/python benchmarks/drill.py --json benchmarks/results/drill.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CASE = json.loads((ROOT / "examples" / "fictional_fact.json").read_text())
SMALL = CASE | {"audit": {"num_ablations": 4, "answer_flip_top_k": 0, "placebos": 0, "orders": 1}}
REAPER_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            self.kill()
        self._fh.close()


class Redis:
    def __init__(self, port: int) -> None:
        self.port, self.proc = port, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Item:
    kind: str  # audit, corpus, gate
    id: str
    path: str
    documents: int = 0


@dataclass
class Recovery:
    fault: str  # worker_kill or broker_restart
    at: float  # monotonic
    since: datetime  # wall clock, to compare with the store's enqueued_at
    items: dict[str, str] = field(default_factory=dict)  # id -> table
    seconds: list[float] = field(default_factory=list)


def schedule(args, rng: random.Random) -> list[tuple[float, str]]:
    """(second, action) of the whole drill, sorted."""
    events = [(rng.uniform(0, args.submit_seconds), "audit") for _ in range(args.audits)]
    events += [(rng.uniform(0, args.submit_seconds), "corpus") for _ in range(args.corpora)]
    events += [(rng.uniform(0, args.submit_seconds), "gate") for _ in range(args.gates)]
    events += [(rng.uniform(15, args.chaos_seconds), "kill") for _ in range(args.kills)]
    events += [(rng.uniform(15, args.chaos_seconds), "restart") for _ in range(args.restarts)]
    return sorted(events)


class Drill:
    def __init__(self, args, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.rng = random.Random(args.seed)
        self.redis = Redis(free_port())
        self.database_url = args.database_url or f"sqlite:///{folder / 'fa.db'}"
        self.env = {
            **os.environ,
            "FAITHAUDIT_DATABASE_URL": self.database_url,
            "FAITHAUDIT_BROKER_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "FAITHAUDIT_QUEUE_NAME": f"fa-drill-{uuid.uuid4().hex[:8]}",
            "FAITHAUDIT_DATA_DIR": str(folder / "data"),
            "FAITHAUDIT_LEASE_SECONDS": str(args.lease),
            "FAITHAUDIT_REAPER_INTERVAL_SECONDS": str(REAPER_SECONDS),
            "FAITHAUDIT_MAX_ATTEMPTS": str(args.max_attempts),
            "FAITHAUDIT_TORCH_THREADS": "1",  # one core per worker: two workers on two cores do not fight
            "FAITHAUDIT_SIGNING_SECRET": "drill-secret-drill-secret-drill-secret",
            "PYTHONUNBUFFERED": "1",
        }
        self.workers: list[Proc] = []
        self.items: list[Item] = []
        self.recoveries: list[Recovery] = []
        self.submit_errors: list[str] = []
        self.spawned = 0
        self.store = None

    # -- processes -------------------------------------------------------------------------------------------

    def start(self) -> None:
        from faithaudit.store import Store

        self.redis.start()
        self.store = Store(self.database_url)
        self.store.upgrade()
        key = subprocess.run([sys.executable, "-m", "faithaudit.cli", "keys", "create", "--tenant", "drill"],
                             cwd=ROOT, env=self.env, capture_output=True, text=True, check=True)  # fmt: skip
        port = free_port()
        self.api = Proc([sys.executable, "-m", "faithaudit.cli", "serve", "--port", str(port)], self.env,
                        self.folder / "api.log")  # fmt: skip
        token = key.stdout.strip().splitlines()[-1]
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for _ in range(self.args.workers):
            self.spawn_worker()

    def spawn_worker(self) -> None:
        self.spawned += 1
        args = [sys.executable, "-m", "faithaudit.cli", "worker", "--loglevel", "WARNING"]
        self.workers.append(Proc(args, self.env, self.folder / f"worker{self.spawned}.log"))

    def stop(self) -> None:
        for proc in (*self.workers, getattr(self, "api", None)):
            if proc is not None:
                proc.stop()
        self.redis.stop()
        if self.store is not None:
            self.store.dispose()

    # -- actions ---------------------------------------------------------------------------------------------

    def submit(self, kind: str) -> None:
        n = len(self.items)
        path, body, documents = self._body(kind, n)
        try:
            r = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            self.submit_errors.append(f"{kind}: {exc}")
            return
        if r.status_code != 202:
            self.submit_errors.append(f"{kind}: HTTP {r.status_code} {r.text[:200]}")
            return
        poll = {"audit": "/v1/audits", "corpus": "/v1/jobs", "gate": "/v1/gates"}[kind]
        self.items.append(Item(kind, r.json()["id"], f"{poll}/{r.json()['id']}", documents))

    @staticmethod
    def _body(kind: str, n: int) -> tuple[str, dict, int]:
        if kind == "audit":
            return "/v1/audits", SMALL | {"query": f"{SMALL['query']} ({n})"}, 0
        if kind == "corpus":
            docs = [{"id": f"d{i}", "text": f"Note {i} of corpus {n}: Velmora ships {i} crates."} for i in range(40)]
            return "/v1/corpora", {"name": f"kb{n}", "documents": docs}, len(docs)
        return "/v1/gates", {"name": f"g{n}", "cases": [{"name": "small", "request": SMALL}]}, 0

    def kill_worker(self) -> None:
        victim = self.rng.choice(self.workers)
        held = self.held_by(victim.popen.pid)
        victim.kill()
        self.workers.remove(victim)
        self.recoveries.append(Recovery("worker_kill", time.monotonic(), datetime.now(UTC), held))
        time.sleep(1.0)
        self.spawn_worker()

    def restart_broker(self) -> None:
        self.redis.stop()  # SIGKILL: the messages in memory are gone
        time.sleep(self.rng.uniform(0.5, 2.0))
        at, since = time.monotonic(), datetime.now(UTC)  # before it answers: a reaper may re-send at once
        self.redis.start()
        self.recoveries.append(Recovery("broker_restart", at, since, self.queued()))

    # -- the store, read directly ----------------------------------------------------------------------------

    def _rows(self, query) -> list:
        with self.store.engine.connect() as conn:
            return list(conn.execute(query))

    def held_by(self, pid: int) -> dict[str, str]:
        import sqlalchemy as sa

        from faithaudit.store.schema import audits, jobs

        mark = f"%:{pid}:%"
        held = {r.id: "audits" for r in self._rows(sa.select(audits.c.id).where(
            audits.c.status == "running", audits.c.lease_owner.like(mark)))}  # fmt: skip
        held |= {r.id: "jobs" for r in self._rows(sa.select(jobs.c.id).where(
            jobs.c.status == "running", jobs.c.worker.like(mark)))}  # fmt: skip
        return held

    def queued(self) -> dict[str, str]:
        import sqlalchemy as sa

        from faithaudit.store.schema import audits, jobs

        out = {r.id: "audits" for r in self._rows(sa.select(audits.c.id).where(audits.c.status == "queued"))}
        return out | {r.id: "jobs" for r in self._rows(sa.select(jobs.c.id).where(jobs.c.status == "queued"))}

    def recovered(self, item_id: str, table: str, since: datetime, *, fault: str) -> bool:
        """Back in the queue (enqueued after the fault), running under another lease, or ended."""
        import sqlalchemy as sa

        from faithaudit.store.schema import audits, jobs

        t = audits if table == "audits" else jobs
        owner = t.c.lease_owner if table == "audits" else t.c.worker
        rows = self._rows(sa.select(t.c.status, t.c.enqueued_at, t.c.started_at, owner.label("owner"),
                                    t.c.updated_at).where(t.c.id == item_id))  # fmt: skip
        if not rows:
            return True  # deleted (never by the drill): counted as lost below
        row = rows[0]
        if row.status in ("succeeded", "failed", "cancelled"):
            return True
        if row.enqueued_at is not None and row.enqueued_at > since:
            return True
        return fault == "worker_kill" and row.status == "running" and row.updated_at > since

    def track(self) -> None:
        now = time.monotonic()
        for rec in (r for r in self.recoveries if r.items):
            for item_id, table in list(rec.items.items()):
                if self.recovered(item_id, table, rec.since, fault=rec.fault):
                    rec.seconds.append(now - rec.at)
                    del rec.items[item_id]

    # -- the run ---------------------------------------------------------------------------------------------

    def run(self) -> dict:
        started = time.monotonic()
        actions = {"kill": self.kill_worker, "restart": self.restart_broker}
        for at, action in schedule(self.args, self.rng):
            while time.monotonic() - started < at:
                self.track()
                time.sleep(0.2)
            actions.get(action, lambda a=action: self.submit(a))()
        while time.monotonic() - started < self.args.deadline and not self.all_ended():
            self.track()
            time.sleep(1.0)
        self.track()
        return self.summary(time.monotonic() - started)

    def all_ended(self) -> bool:
        """Read from the store in two queries (polling every item over HTTP would take a core from the workers)."""
        import sqlalchemy as sa

        from faithaudit.store.schema import ACTIVE, audits, jobs

        ids = [i.id for i in self.items]
        active = self._rows(sa.select(audits.c.id).where(audits.c.id.in_(ids), audits.c.status.in_(ACTIVE)))
        active += self._rows(sa.select(jobs.c.id).where(jobs.c.id.in_(ids), jobs.c.status.in_(ACTIVE)))
        return not active

    def status(self, item: Item) -> dict:
        r = self.client.get(item.path)
        return r.json() if r.status_code == 200 else {"status": "lost", "http": r.status_code}

    def summary(self, seconds: float) -> dict:
        counts = {"submitted": len(self.items), "succeeded": 0, "failed_with_reason": 0, "failed_without_reason": 0,
                  "lost": 0, "stuck": 0, "written_twice": 0}  # fmt: skip
        failures = []
        for item in self.items:
            body = self.status(item)
            state = body["status"]
            if state == "succeeded":
                counts["succeeded"] += 1
            elif state == "failed":
                counts["failed_with_reason" if body.get("error") else "failed_without_reason"] += 1
                failures.append(f"{item.kind} {item.id}: {body.get('error')}")
            elif state == "lost":
                counts["lost"] += 1
            else:
                counts["stuck"] += 1
                failures.append(f"{item.kind} {item.id}: stuck {state}")
            counts["written_twice"] += self.written_twice(item, body)
        target = 2 * self.args.lease + REAPER_SECONDS
        recovery = {}
        for fault in ("worker_kill", "broker_restart"):
            xs = sorted(x for r in self.recoveries if r.fault == fault for x in r.seconds)
            never = sum(len(r.items) for r in self.recoveries if r.fault == fault)
            recovery[fault] = {"faults": sum(r.fault == fault for r in self.recoveries), "items": len(xs),
                               "never_recovered": never, **_percentiles(xs)}  # fmt: skip
        ok = (counts["lost"] == counts["stuck"] == counts["written_twice"] == counts["failed_without_reason"] == 0
              and not self.submit_errors
              and all(v["never_recovered"] == 0 and (v["p99"] or 0) <= target for v in recovery.values()))  # fmt: skip
        return {"ok": ok, **counts, "recovery_seconds": recovery, "recovery_target_seconds": target,
                "failures": failures, "submit_errors": self.submit_errors, "seconds": round(seconds, 1)}  # fmt: skip

    def written_twice(self, item: Item, body: dict) -> int:
        if item.kind == "audit":
            return int([s for s, _ in self.store.events(item.id)].count("succeeded") > 1)
        if item.kind == "corpus" and body.get("status") == "succeeded":
            return int(body["result"]["num_documents"] != item.documents)
        return 0


def _percentiles(xs: list[float]) -> dict:
    if not xs:
        return {"p50": None, "p99": None, "max": None}

    def q(p: float) -> float:
        return round(xs[min(len(xs) - 1, max(0, int(round(p * (len(xs) - 1)))))], 2)

    return {"p50": q(0.5), "p99": q(0.99), "max": round(xs[-1], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--audits", type=int, default=24)
    ap.add_argument("--corpora", type=int, default=3)
    ap.add_argument("--gates", type=int, default=3)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--submit-seconds", type=float, default=240)
    ap.add_argument("--chaos-seconds", type=float, default=300)
    ap.add_argument("--deadline", type=float, default=840, help="Stop waiting this many seconds after the start.")
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--max-attempts", type=int, default=5)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="faithaudit-drill-"))
    drill = Drill(args, folder)
    try:
        drill.start()
        result = drill.run()
    finally:
        drill.stop()
    result |= {"command": " ".join(["benchmarks/drill.py", *sys.argv[1:]]), "settings": vars(args) | {"json": None},
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "run_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    print(_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if result["ok"]:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"logs kept in {folder}")
    return 0 if result["ok"] else 1


def _table(r: dict) -> str:
    lines = [
        "| submitted | succeeded | failed (reason) | lost | stuck | written twice |",
        "|---|---|---|---|---|---|",
        f"| {r['submitted']} | {r['succeeded']} | {r['failed_with_reason']} | {r['lost']} | {r['stuck']} "
        f"| {r['written_twice']} |",
        "",
        "| recovery after | faults | items | p50 s | p99 s | max s | target s |",
        "|---|---|---|---|---|---|---|",
    ]
    for fault, v in r["recovery_seconds"].items():
        lines.append(f"| {fault} | {v['faults']} | {v['items']} | {v['p50']} | {v['p99']} | {v['max']} "
                     f"| {r['recovery_target_seconds']} |")  # fmt: skip
    lines.append(f"\n{'PASS' if r['ok'] else 'FAIL'} in {r['seconds']} s; failures: {r['failures'][:10]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
