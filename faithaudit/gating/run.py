"""Run resolved cases in this process (the CLI's default, and the worker's gate job): one model per name."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from faithaudit.api_schemas import GateVerdict
from faithaudit.errors import FaithauditError
from faithaudit.gating.suite import ResolvedCase
from faithaudit.gating.verdict import case_verdict, error_verdict

ModelLoader = Callable[[str], object]


def run_cases(
    cases: list[ResolvedCase],
    *,
    load_model: ModelLoader,
    default_model: str,
    data_dir: Path,
    tenant: str,
    suite: str | None = None,
    max_sources: int | None = None,
    max_source_chars: int | None = None,
    on_case: Callable[[int, str], None] | None = None,
) -> GateVerdict:
    """Audit every case; an audit that raises becomes an ``error`` case (the verdict is then not evaluated)."""
    from faithaudit.audits.run import audit_request
    from faithaudit.retrieval.replay import CorpusLibrary
    from faithaudit.tools import registry_for

    verdicts = []
    for case in cases:
        if on_case is not None:
            on_case(case.index, case.name)
        t0 = time.perf_counter()
        try:
            model = load_model(case.request.model.name or default_model)
            report = audit_request(
                case.request,
                model,
                tenant=tenant,
                corpora=CorpusLibrary(data_dir),
                max_sources=max_sources,
                max_source_chars=max_source_chars,
                tools=registry_for,
            )
        except FaithauditError as exc:
            verdicts.append(error_verdict(case.name, case.request.thresholds, exc.message))
            continue
        except Exception as exc:  # noqa: BLE001 - any failure of one case is reported, the others still run
            verdicts.append(error_verdict(case.name, case.request.thresholds, f"{type(exc).__name__}: {exc}"))
            continue
        verdicts.append(case_verdict(case.name, case.request.thresholds, report, seconds=time.perf_counter() - t0))
    return GateVerdict.of(verdicts, suite=suite)
