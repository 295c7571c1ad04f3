"""Pass or fail an audit against thresholds. A threshold on a figure that was not measured fails, and says so."""

from __future__ import annotations

from collections.abc import Collection

from faithaudit.api_schemas import GateFailure, GateResult, Summary, Thresholds


def evaluate_gate(thresholds: Thresholds | None, summary: Summary, *, methods: Collection[str]) -> GateResult:
    if thresholds is None:
        return GateResult(passed=True, failures=[])
    failures: list[GateFailure] = []

    def check(name: str, limit: float | None, measured: float | None, what: str, *, most: bool = False) -> None:
        if limit is None:
            return
        if measured is None:
            failures.append(GateFailure(threshold=name, limit=limit, measured=None, message=f"{what} not measured"))
        elif (measured > limit) if most else (measured < limit):
            sign = ">" if most else "<"
            message = f"{what} {measured:.3g} {sign} {limit:g}"
            failures.append(GateFailure(threshold=name, limit=limit, measured=measured, message=message))

    t = thresholds
    check("min_context_reliance", t.min_context_reliance, summary.context_reliance, "context_reliance")
    check("min_context_token_share", t.min_context_token_share, summary.context_token_share, "context_token_share")
    check("min_citation_precision", t.min_citation_precision, summary.citation_precision, "citation_precision")
    floor = summary.noise_floor_nats
    check("max_noise_floor_nats", t.max_noise_floor_nats, floor, "noise_floor_nats", most=True)
    limit = t.max_attended_not_relied
    if limit is not None:
        if not {"attention", "leave_one_out"} <= set(methods):
            message = "labels not measured (needs attention and leave_one_out)"
            failures.append(
                GateFailure(threshold="max_attended_not_relied", limit=limit, measured=None, message=message)
            )
        else:
            count = summary.label_counts.get("attended_not_relied", 0)
            message = f"{count} sources attended but not relied on > {limit}"
            check("max_attended_not_relied", limit, count, "attended_not_relied", most=True)
            if failures and failures[-1].threshold == "max_attended_not_relied":
                failures[-1] = failures[-1].model_copy(update={"message": message})
    in_force = {k: float(v) for k, v in thresholds.model_dump(exclude_none=True).items()}
    return GateResult(passed=not failures, failures=failures, thresholds=in_force)
