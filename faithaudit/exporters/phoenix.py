"""An audit's findings as Arize Phoenix annotations and OpenTelemetry ``gen_ai.evaluation.result`` events.

- Document annotations (Phoenix ``AnnotateSpanDocumentsRequestBody``): one per retrieved document of an imported
  trace, on its RETRIEVER span at its position: score = leave-one-out reliance (nats), label = the source's label,
  explanation = the label's one-line reason.
- Span annotations (``AnnotateSpansRequestBody``) on the audited LLM span: context reliance (score, nats; label
  parametric or context), the gate (label passed/failed) and the noise floor (score, nats).
- The same figures as OpenTelemetry events (log records named ``gen_ai.evaluation.result``, OTLP/JSON logs),
  attached to the audited spans, for collectors that take evaluations as events.

The report must carry the trace's ids (``faithaudit import otlp`` puts them in ``metadata``)."""

from __future__ import annotations

from typing import Any

from faithaudit.api_schemas import AuditReport
from faithaudit.errors import InvalidRequestError
from faithaudit.pages.verdict import verdict

ANNOTATOR = "CODE"
PREFIX = "faithaudit"


def _ids(report: AuditReport) -> tuple[str, str, dict[str, list]]:
    meta = report.metadata
    trace_id, span_id = meta.get("trace_id"), meta.get("span_id")
    if not (isinstance(trace_id, str) and isinstance(span_id, str)):
        raise InvalidRequestError.for_field(
            "metadata.span_id", "the report has no trace ids: export works on audits of imported traces"
        )
    spans = meta.get("document_spans") if isinstance(meta.get("document_spans"), dict) else {}
    return trace_id, span_id, spans


def document_annotations(report: AuditReport, *, audit_id: str | None = None) -> dict[str, Any]:
    _, _, spans = _ids(report)
    floor = report.summary.noise_floor_nats
    data = []
    for src in report.sources:
        where = spans.get(src.document_id)
        if where is None or src.reliance is None:
            continue
        result: dict[str, Any] = {"score": src.reliance, "explanation": src.label_reason or ""}
        if src.label:
            result["label"] = src.label
        data.append(
            {
                "name": f"{PREFIX}.reliance",
                "annotator_kind": ANNOTATOR,
                "span_id": where[0],
                "document_position": int(where[1]),
                "result": result,
                "metadata": _meta(
                    audit_id,
                    unit="nats",
                    interval=src.reliance_interval,
                    noise_floor=floor,
                    attention=src.attention,
                    source_id=src.id,
                ),
            }
        )
    return {"data": data}


def span_annotations(report: AuditReport, *, audit_id: str | None = None) -> dict[str, Any]:
    _, span_id, _ = _ids(report)
    s = report.summary
    reading = verdict(report).reading
    data = []
    if s.context_reliance is not None:
        label = "parametric" if s.parametric else "context"
        data.append(
            _span(
                span_id,
                "context_reliance",
                {"score": s.context_reliance, "label": label, "explanation": reading},
                audit_id,
            )
        )
    if s.noise_floor_nats is not None:
        result = {"score": s.noise_floor_nats, "explanation": f"{len(s.placebo_reliance or [])} placebo sources"}
        data.append(_span(span_id, "noise_floor", result, audit_id))
    gate = report.gate
    explanation = "; ".join(f.message for f in gate.failures) or "no threshold failed"
    data.append(
        _span(
            span_id,
            "gate",
            {"label": "passed" if gate.passed else "failed", "score": float(gate.passed), "explanation": explanation},
            audit_id,
        )
    )
    return {"data": data}


def _span(span_id: str, name: str, result: dict[str, Any], audit_id: str | None) -> dict[str, Any]:
    return {
        "name": f"{PREFIX}.{name}",
        "annotator_kind": ANNOTATOR,
        "span_id": span_id,
        "result": result,
        "metadata": _meta(audit_id),
    }


def _meta(audit_id: str | None, **extra: Any) -> dict[str, Any]:
    out = {k: v for k, v in extra.items() if v is not None}
    if audit_id:
        out["audit_id"] = audit_id
    return out


def evaluation_events(report: AuditReport, *, time_unix_nano: int, audit_id: str | None = None) -> dict[str, Any]:
    """OTLP/JSON logs: one ``gen_ai.evaluation.result`` event per span and document annotation."""
    trace_id, _, _ = _ids(report)
    records = []
    for a in (
        span_annotations(report, audit_id=audit_id)["data"] + document_annotations(report, audit_id=audit_id)["data"]
    ):
        attributes = {"gen_ai.evaluation.name": a["name"], **_result_attributes(a["result"])}
        if "document_position" in a:
            attributes["faithaudit.document.position"] = a["document_position"]
        records.append(
            {
                "timeUnixNano": str(time_unix_nano),
                "eventName": "gen_ai.evaluation.result",
                "traceId": trace_id,
                "spanId": a["span_id"],
                "attributes": [{"key": k, "value": _any(v)} for k, v in attributes.items()],
            }
        )
    scope = {"name": "faithaudit"}
    return {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"scope": scope, "logRecords": records}]}]}


def _result_attributes(result: dict[str, Any]) -> dict[str, Any]:
    out = {}
    if "score" in result:
        out["gen_ai.evaluation.score.value"] = float(result["score"])
    if "label" in result:
        out["gen_ai.evaluation.score.label"] = result["label"]
    if result.get("explanation"):
        out["gen_ai.evaluation.explanation"] = result["explanation"]
    return out


def _any(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def export_bundle(report: AuditReport, *, time_unix_nano: int, audit_id: str | None = None) -> dict[str, Any]:
    """Everything in one JSON file: the two Phoenix request bodies and the OTLP/JSON evaluation events."""
    return {
        "span_annotations": span_annotations(report, audit_id=audit_id),
        "document_annotations": document_annotations(report, audit_id=audit_id),
        "otlp_logs": evaluation_events(report, time_unix_nano=time_unix_nano, audit_id=audit_id),
    }


def post_to_phoenix(
    bundle: dict[str, Any], base_url: str, *, api_key: str | None = None, timeout: float = 30.0
) -> dict:
    """POST the annotations to a Phoenix server the user named (``/v1/span_annotations``,
    ``/v1/document_annotations``); returns {endpoint: HTTP status}. Nothing is sent anywhere else."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    statuses = {}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout) as client:
        for endpoint, body in (
            ("/v1/span_annotations", bundle["span_annotations"]),
            ("/v1/document_annotations", bundle["document_annotations"]),
        ):
            if body["data"]:
                response = client.post(endpoint, json=body)  # as Phoenix's own client posts (sync off)
                statuses[endpoint] = response.status_code
    return statuses
