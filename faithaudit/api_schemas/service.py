"""Contracts of the HTTP service: what the audit endpoints answer, and the names of the worker tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from faithaudit.api_schemas.report import AuditReport
from faithaudit.api_schemas.request import AuditRequest
from faithaudit.api_schemas.suite import GateVerdict

# The service reaches the workers by task name only (it never imports them).
RUN_AUDIT_TASK = "faithaudit.run_audit"
RUN_JOB_TASK = "faithaudit.run_job"  # corpus builds and gate suites
RUN_SHARD_TASK = "faithaudit.run_shard"  # one unit of an audit split over workers
DELIVER_CALLBACK_TASK = "faithaudit.deliver_callback"  # an ended audit's webhook (request.callback_url)

AuditStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Links(BaseModel):
    self: str
    report_html: str


class PlannedCost(BaseModel):
    """What an audit will cost, from its plan, before any model work (the quotas count ``tokens``)."""

    forward_passes: int = Field(description="Planned forward passes and regenerations, the full-context pass included.")
    tokens: int = Field(
        description="Planned tokens processed: each pass times the prompt and response length (an upper bound: "
        "ablations drop sources)."
    )
    tokens_method: str = Field(
        description="How the lengths were counted: 'tokenizer' (the model's own), 'characters/4' (the model is "
        "not cached yet), or 'retriever' (documents not retrieved yet: each of the k counted as the corpus's longest "
        "document, characters/4)."
    )


class AuditAccepted(BaseModel):
    id: str
    status: AuditStatusName
    links: Links
    planned: PlannedCost | None = Field(
        None, description="The plan's cost, before any model work (the same on an idempotent replay)."
    )


class Progress(BaseModel):
    fraction: float = Field(ge=0.0, le=1.0)
    stage: str | None = None


class AuditSummary(BaseModel):
    id: str
    status: AuditStatusName
    progress: Progress
    attempts: int
    gate_passed: bool | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    tags: list[str] = Field(default_factory=list, description="The request's tags.")


class AuditStatus(AuditSummary):
    report: AuditReport | None = None
    report_url: str | None = Field(None, description="A signed, expiring link to the HTML report (no header needed).")


class AuditList(BaseModel):
    items: list[AuditSummary]
    next_cursor: str | None = None


class ErrorField(BaseModel):
    path: str
    msg: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[ErrorField] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorDetail


JobKind = Literal["corpus_create", "corpus_add", "corpus_delete", "gate"]


class JobLinks(BaseModel):
    self: str


class JobAccepted(BaseModel):
    id: str
    kind: JobKind
    status: AuditStatusName
    links: JobLinks
    planned: PlannedCost | None = Field(None, description="A gate's planned cost: the sum over its cases.")


class JobStatus(BaseModel):
    """A corpus build or a gate run: poll until ``status`` is succeeded or failed."""

    id: str
    kind: JobKind
    status: AuditStatusName
    attempts: int
    error: str | None = None
    result: dict | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class GateStatus(JobStatus):
    verdict: GateVerdict | None = Field(None, description="Once succeeded: the suite's verdict.")


class ImportedRequest(BaseModel):
    """A trace or dataset row converted into an audit request (not submitted: POST it to /v1/audits)."""

    request: AuditRequest = Field(description="The audit request, validated as POST /v1/audits would.")
    notes: list[str] = Field(default_factory=list, description="What the importer chose, e.g. which answer it audits.")


class OtlpTracesIn(BaseModel):
    """An OTLP/JSON traces document (an ``ExportTraceServiceRequest``), as an OTLP/HTTP exporter sends it or a
    collector's file exporter writes it. Only its shape is declared here; ``importers.otlp`` reads the spans."""

    model_config = ConfigDict(extra="allow")

    resourceSpans: list[dict[str, Any]] = Field(  # noqa: N815 - the OTLP field name
        description="resourceSpans[].scopeSpans[].spans[] with OpenInference or GenAI attributes."
    )


class WebhookSecret(BaseModel):
    """The key for checking ``X-Faithaudit-Signature`` on this tenant's webhooks (``webhooks.verify_signature``)."""

    secret: str = Field(description="HMAC-SHA256 key, hex; derived for this tenant from the service's secret.")
    header: str = "X-Faithaudit-Signature"
    scheme: str = Field(default="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>")


class QuotaLimits(BaseModel):
    max_active_audits: int | None = Field(
        description="Most audits and gate runs queued or running at once (FAITHAUDIT_QUOTA_MAX_ACTIVE_AUDITS); "
        "null: no limit."
    )
    planned_tokens_per_hour: int | None = Field(
        description="Most planned tokens submitted in any hour (FAITHAUDIT_QUOTA_TOKENS_PER_HOUR); null: no limit."
    )


class Usage(BaseModel):
    """This tenant's limits and what counts against them now (``GET /v1/usage``)."""

    limits: QuotaLimits
    active_audits: int = Field(description="Audits queued or running now.")
    active_gates: int = Field(description="Gate runs queued or running now (each counts as one against the limit).")
    planned_tokens_last_hour: int = Field(description="Planned tokens of audits and gates submitted in the last hour.")
    submitted_last_hour: int = Field(description="Audits and gates submitted in the last hour.")
    window_seconds: int = 3600
