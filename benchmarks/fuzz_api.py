"""Fuzz the HTTP API from its own OpenAPI document with schemathesis, in-process over ASGI, no worker consuming.

    PYTHONPATH=. python benchmarks/fuzz_api.py --examples 200 --json benchmarks/results/fuzz_api.json   # make fuzz

Every operation gets ``examples`` positive cases (bodies, parameters and headers valid by the declared schemas)
and ``examples`` negative ones (each breaking the schema somewhere), derandomized so that a count is repeatable,
sent with a valid API key. Checks: no 5xx, a status
code, content type and body that the document declares. ``tests/test_fuzz_api.py`` runs 25 per operation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path


def fuzz(workdir: Path, *, examples: int, queue: str) -> dict:
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    from faithaudit.config import Settings
    from faithaudit.queue import Enqueuer
    from faithaudit.service.app import create_app
    from faithaudit.store import Store

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    config = Settings(database_url=f"sqlite:///{workdir / 'fa.db'}", queue_name=queue, data_dir=workdir)
    store = Store.from_settings(config)
    store.upgrade()
    enqueuer = Enqueuer(config.broker_url, config.queue_name)
    app = create_app(config, store=store, enqueuer=enqueuer, run_reaper=False)
    headers = {"X-API-Key": store.create_api_key("acme")[0]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    counts = {"operations": 0, "cases": 0}
    started = time.perf_counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _explore(operation, mode, examples, lambda case: _call(case, headers, checks, counts))
            except Unsatisfiable:  # nothing to break: an operation with no parameters and no body
                counts["no_negative_space"] = counts.get("no_negative_space", 0) + 1
            except Exception as exc:  # hypothesis stops this operation at its first (shrunk) failure
                failures.extend(f"{operation.label} ({mode.value}): {line}" for line in _failure_lines(exc))
    enqueuer.purge()
    store.dispose()
    return counts | {
        "examples_per_operation": examples,
        "seconds": round(time.perf_counter() - started, 1),
        "failures": failures,
    }


def _explore(operation, mode, examples: int, call) -> None:
    from hypothesis import HealthCheck, given, settings

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
              database=None)  # fmt: skip
    def run(case) -> None:
        call(case)

    run()


def _call(case, headers: dict, checks: list, counts: dict) -> None:
    counts["cases"] += 1
    if case.media_type is not None and case.body is not None:  # negative bodies stay JSON: 415 is tested apart
        headers = {**headers, "Content-Type": "application/json"}
    case.call_and_validate(headers=headers, checks=checks)


def _failure_lines(exc: Exception) -> list[str]:
    """One line per distinct failure: its title and the status and body excerpt schemathesis reports."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("- ", "[", "Received", "`"))]
    return [" | ".join(lines)[:600] or text.splitlines()[0][:300]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        summary = fuzz(Path(tmp), examples=args.examples, queue=f"fa-fuzz-{uuid.uuid4().hex[:8]}")
    text = json.dumps(summary | {"command": " ".join(["benchmarks/fuzz_api.py", *(argv or sys.argv[1:])])}, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
