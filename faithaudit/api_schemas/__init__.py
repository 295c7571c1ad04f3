"""Typed contracts at the edges (pydantic v2). Imports nothing else of faithaudit; never torch."""

from faithaudit.api_schemas.errors import format_loc, validation_fields
from faithaudit.api_schemas.report import (
    AuditReport,
    Cost,
    GateFailure,
    GateResult,
    MethodCost,
    ModelInfo,
    SourceReport,
    Summary,
)
from faithaudit.api_schemas.request import (
    DEFAULT_METHODS,
    AuditOptions,
    AuditRequest,
    Document,
    LabelThresholds,
    Method,
    ModelSpec,
    Pipeline,
    PromptSpec,
    RagPipeline,
    Thresholds,
)

__all__ = [
    "DEFAULT_METHODS",
    "AuditOptions",
    "AuditReport",
    "AuditRequest",
    "Cost",
    "Document",
    "GateFailure",
    "GateResult",
    "LabelThresholds",
    "Method",
    "MethodCost",
    "ModelInfo",
    "ModelSpec",
    "Pipeline",
    "PromptSpec",
    "RagPipeline",
    "SourceReport",
    "Summary",
    "Thresholds",
    "format_loc",
    "validation_fields",
]
