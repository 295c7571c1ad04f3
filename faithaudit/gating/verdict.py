"""Turn audit reports into case verdicts, and verdicts into JUnit XML (one testcase per case)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from faithaudit.api_schemas import AuditReport, CaseVerdict, GateVerdict

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_SUITE, EXIT_NOT_EVALUATED = 0, 1, 2, 3


def case_verdict(
    name: str, thresholds, report: AuditReport, *, seconds: float | None = None, audit_id: str | None = None
) -> CaseVerdict:
    s = report.summary
    measured = {
        "context_reliance": s.context_reliance,
        "context_token_share": s.context_token_share,
        "noise_floor_nats": s.noise_floor_nats,
        "citation_precision": s.citation_precision,
        "attended_not_relied": float(s.label_counts.get("attended_not_relied", 0)),
    }
    return CaseVerdict(
        name=name,
        status="passed" if report.gate.passed else "failed",
        thresholds=thresholds.model_dump(exclude_none=True) if thresholds is not None else {},
        measured=measured,
        failures=report.gate.failures,
        audit_id=audit_id,
        seconds=None if seconds is None else round(seconds, 3),
    )


def error_verdict(name: str, thresholds, error: str, *, audit_id: str | None = None) -> CaseVerdict:
    return CaseVerdict(
        name=name,
        status="error",
        thresholds=thresholds.model_dump(exclude_none=True) if thresholds is not None else {},
        error=error,
        audit_id=audit_id,
    )


def exit_code(verdict: GateVerdict) -> int:
    return {"passed": EXIT_PASSED, "failed": EXIT_FAILED, "error": EXIT_NOT_EVALUATED}[verdict.status]


def failure_message(case: CaseVerdict) -> str:
    parts = []
    for f in case.failures:
        measured = "not measured" if f.measured is None else f"{f.measured:.4g}"
        parts.append(f"{f.threshold}: limit {f.limit:g}, measured {measured}")
    return "; ".join(parts)


def verdict_line(verdict: GateVerdict) -> str:
    n = len(verdict.cases)
    failed = sum(c.status == "failed" for c in verdict.cases)
    errors = sum(c.status == "error" for c in verdict.cases)
    name = f" ({verdict.suite})" if verdict.suite else ""
    if verdict.status == "passed":
        return f"gate PASSED{name}: all {n} case(s) passed"
    if verdict.status == "failed":
        return f"gate FAILED{name}: {failed} of {n} case(s) failed a threshold"
    return f"gate NOT EVALUATED{name}: {errors} of {n} case(s) could not be audited, {failed} failed"


def junit_xml(verdict: GateVerdict) -> str:
    suite_name = verdict.suite or "faithaudit-gate"
    failures = sum(c.status == "failed" for c in verdict.cases)
    errors = sum(c.status == "error" for c in verdict.cases)
    total = sum(c.seconds or 0.0 for c in verdict.cases)
    root = ET.Element("testsuites", name="faithaudit gate", tests=str(len(verdict.cases)))
    suite = ET.SubElement(
        root,
        "testsuite",
        name=suite_name,
        tests=str(len(verdict.cases)),
        failures=str(failures),
        errors=str(errors),
        time=f"{total:.3f}",
    )
    for case in verdict.cases:
        tc = ET.SubElement(
            suite,
            "testcase",
            classname=f"faithaudit.gate.{suite_name}",
            name=case.name,
            time=f"{case.seconds or 0:.3f}",
        )
        props = ET.SubElement(tc, "properties")
        for key, value in sorted(case.thresholds.items()):
            ET.SubElement(props, "property", name=f"threshold.{key}", value=f"{value:g}")
        for key, value in sorted(case.measured.items()):
            if value is not None:
                ET.SubElement(props, "property", name=f"measured.{key}", value=f"{value:.6g}")
        if case.audit_id:
            ET.SubElement(props, "property", name="audit_id", value=case.audit_id)
        if case.status == "failed":
            message = failure_message(case)
            node = ET.SubElement(tc, "failure", message=message, type="threshold")
            node.text = "\n".join(f.message for f in case.failures)
        elif case.status == "error":
            node = ET.SubElement(tc, "error", message=case.error or "could not evaluate", type="audit_error")
            node.text = case.error or ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
