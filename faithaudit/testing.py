"""Assertions over an audit report for a team's own tests (``from faithaudit.testing import assert_relies_on``).
Each failure message names the figure, what was measured and the limit, so a red test explains itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from faithaudit.api_schemas import AuditReport, Thresholds

RELIED = ("decisive", "supporting", "relied_not_attended")


class RelianceAssertionError(AssertionError):
    """A reliance assertion failed; ``str()`` names the figure and the limit."""


def _source(report: AuditReport, sid: str):
    found = next((s for s in report.sources if s.id == sid), None)
    if found is None:
        raise RelianceAssertionError(f"no source {sid!r} in the report (sources: {[s.id for s in report.sources]})")
    return found


def assert_relies_on(report: AuditReport, source_ids: Iterable[str], *, min_nats: float | None = None) -> None:
    """Every source in ``source_ids`` is relied on: a relied-on label (its interval clears the noise floor), and,
    with ``min_nats``, the low end of its reliance interval is at least that many nats."""
    problems = []
    for sid in source_ids:
        src = _source(report, sid)
        lo = src.reliance_interval[0] if src.reliance_interval else src.reliance
        figure = "—" if src.reliance is None else f"{src.reliance:+.2f} nats (interval low {lo:+.2f})"
        if src.label not in RELIED:
            problems.append(f"{sid}: label {src.label!r} is not one of {list(RELIED)}: {src.label_reason or figure}")
        elif min_nats is not None and (lo is None or lo < min_nats):
            problems.append(
                f"{sid}: reliance interval low {lo if lo is None else f'{lo:+.2f}'} nats < min_nats {min_nats:g}"
            )
    if problems:
        floor = report.summary.noise_floor_nats
        tail = "" if floor is None else f" (noise floor {floor:.2f} nats)"
        raise RelianceAssertionError(
            "the answer does not rely on what it should" + tail + ":\n  " + "\n  ".join(problems)
        )


def assert_not_parametric(report: AuditReport) -> None:
    """The answer depends on the context: context_reliance is above max(the parametric rule, the noise floor)."""
    s = report.summary
    if s.context_reliance is None:
        raise RelianceAssertionError("context_reliance was not measured (add no_context to audit.methods)")
    if s.parametric:
        floor = "—" if s.noise_floor_nats is None else f"{s.noise_floor_nats:.2f}"
        raise RelianceAssertionError(
            f"the answer is parametric: context_reliance {s.context_reliance:+.2f} nats is under the parametric "
            f"limit (max of the rule and the noise floor {floor})"
        )


def assert_thresholds(report: AuditReport, thresholds: Mapping[str, float] | Thresholds) -> None:
    """The report's figures pass ``thresholds`` (the gate's names, e.g. min_context_reliance)."""
    from faithaudit.audits.report.gate import evaluate_gate

    limits = thresholds if isinstance(thresholds, Thresholds) else Thresholds.model_validate(dict(thresholds))
    gate = evaluate_gate(limits, report.summary, methods=report.methods)
    if not gate.passed:
        lines = [f"{f.threshold}: {f.message} (limit {f.limit:g})" for f in gate.failures]
        raise RelianceAssertionError("thresholds failed:\n  " + "\n  ".join(lines))
