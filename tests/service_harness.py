"""Real processes for service tests: the API (uvicorn), Celery workers, a private Redis, PostgreSQL schemas."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = os.environ.get("FAITHAUDIT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(tmp_path: Path, *, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "FAITHAUDIT_DATABASE_URL": database_url,
        "FAITHAUDIT_BROKER_URL": broker_url,
        "FAITHAUDIT_QUEUE_NAME": f"fa-test-{uuid.uuid4().hex[:8]}",
        "FAITHAUDIT_DATA_DIR": str(tmp_path / "data"),
        "FAITHAUDIT_LEASE_SECONDS": "6",
        "FAITHAUDIT_REAPER_INTERVAL_SECONDS": "1",
        "FAITHAUDIT_SIGNING_SECRET": "test-secret",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class Proc:
    """A child process in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill_group()
        self._fh.close()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def start_api(env: dict[str, str], log: Path, *, no_auth: bool = False, workers: int = 1) -> tuple[Proc, str]:
    """``faithaudit serve`` on a free port; with ``workers`` > 1, returns once every API process has started."""
    port = free_port()
    args = [sys.executable, "-m", "faithaudit.cli", "serve", "--port", str(port), "--workers", str(workers)]
    proc = Proc(args + (["--no-auth"] if no_auth else []), env, log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"API exited:\n{proc.tail()}")
        try:
            healthy = httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy and proc.log.read_text(errors="replace").count("Application startup complete") >= workers:
            return proc, base
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"API did not start:\n{proc.tail()}")


def api_processes(api: Proc) -> list[int]:
    """The pids of the API processes that ``serve --workers N`` started (its children, less multiprocessing's
    resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == api.popen.pid and b"resource_tracker" not in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def start_worker(env: dict[str, str], log: Path, *, queues: str | None = None, nice: int = 0) -> Proc:
    """``nice``: start it under ``nice -n`` (its threads and pool processes inherit the niceness)."""
    extra = ["--queues", queues] if queues else []
    prefix = ["nice", "-n", str(nice)] if nice else []
    return Proc([*prefix, sys.executable, "-m", "faithaudit.cli", "worker", "--loglevel", "INFO", *extra], env, log)


def create_key(env: dict[str, str], tenant: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "faithaudit.cli", "keys", "create", "--tenant", tenant],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


def wait_for(client: httpx.Client, audit_id: str, predicate, *, timeout: float, interval: float = 0.5) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/audits/{audit_id}").json()
        if predicate(body):
            return body
        time.sleep(interval)
    raise AssertionError(
        f"timed out waiting on audit {audit_id}; last: { {k: body.get(k) for k in body if k != 'report'} }"
    )


@contextmanager
def postgres_schema(base: str = PG_BASE):
    """A fresh schema in the local PostgreSQL `test` database (or ``base``, a URL without a query); yields a URL
    whose search_path is that schema."""
    import sqlalchemy as sa

    name = f"fa_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def private_redis(port: int):
    """A redis-server of our own on ``port`` (no persistence), stopped at the end."""
    proc = start_redis(port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis(port, proc)


def start_redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def stop_redis(port: int, proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
