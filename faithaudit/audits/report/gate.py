"""Pass or fail an audit against thresholds. A threshold on a figure that was not measured fails, and says so."""

from __future__ import annotations

from collections.abc import Collection

from faithaudit.api_schemas import GateFailure, GateResult, Summary, Thresholds


def evaluate_gate(thresholds: Thresholds | None, summary: Summary, *, methods: Collection[str]) -> GateResult:
    if thresholds is None:
        return GateResult(passed=True, failures=[])
    failures: list[GateFailure] = []

    def at_least(name: str, limit: float | None, measured: float | None, what: str) -> None:
        if limit is None:
            return
        if measured is None:
            failures.append(GateFailure(threshold=name, limit=limit, measured=None, message=f"{what} not measured"))
        elif measured < limit:
            failures.append(
                GateFailure(
                    threshold=name, limit=limit, measured=measured, message=f"{what} {measured:.3g} < {limit:g}"
                )
            )

    at_least("min_context_reliance", thresholds.min_context_reliance, summary.context_reliance, "context_reliance")
    at_least(
        "min_faithfulness_score", thresholds.min_faithfulness_score, summary.faithfulness_score, "faithfulness_score"
    )
    at_least(
        "min_citation_precision",
        thresholds.min_citation_precision,
        summary.citation_precision,
        "citation_precision",
    )
    limit = thresholds.max_attended_not_relied
    if limit is not None:
        count = summary.label_counts.get("attended_not_relied", 0)
        if not {"attention", "leave_one_out"} <= set(methods):
            failures.append(
                GateFailure(
                    threshold="max_attended_not_relied",
                    limit=limit,
                    measured=None,
                    message="labels not measured (needs attention and leave_one_out)",
                )
            )
        elif count > limit:
            failures.append(
                GateFailure(
                    threshold="max_attended_not_relied",
                    limit=limit,
                    measured=count,
                    message=f"{count} sources attended but not relied on > {limit}",
                )
            )
    return GateResult(passed=not failures, failures=failures)
