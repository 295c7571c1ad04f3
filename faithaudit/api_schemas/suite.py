"""Gate suites (``faithaudit gate SUITE``, ``POST /v1/gates``) and their verdicts.

A suite is ``thresholds`` (defaults for every case) and ``cases``: a path to a request file (relative to the suite
file, or absolute), or an inline request; a case may override thresholds. Precedence: suite < request file < case.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from faithaudit.api_schemas.report import GateFailure
from faithaudit.api_schemas.request import AuditRequest, Thresholds


class SuiteCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    path: str | None = Field(default=None, min_length=1, description="A request file, relative to the suite file.")
    request: AuditRequest | None = Field(default=None, description="An inline audit request.")
    dataset: str | None = Field(
        default=None, min_length=1, description="A RAGAS or DeepEval file (relative to the suite): one case a row."
    )
    format: Literal["ragas", "deepeval"] | None = Field(default=None, description="The dataset's format.")
    thresholds: Thresholds | None = Field(default=None, description="Overrides the suite's and the file's.")

    @model_validator(mode="after")
    def _one_source(self) -> SuiteCase:
        if sum(x is not None for x in (self.path, self.request, self.dataset)) != 1:
            raise ValueError("a case needs exactly one of `path`, `request` and `dataset`")
        if (self.dataset is None) != (self.format is None):
            raise ValueError("`format` (ragas or deepeval) goes with `dataset`, and only with it")
        return self


class GateSuite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    thresholds: Thresholds | None = None
    cases: list[SuiteCase] = Field(min_length=1, max_length=500)

    @field_validator("cases", mode="before")
    @classmethod
    def _paths_as_cases(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"path": c} if isinstance(c, str) else c for c in v]
        return v


CaseStatus = Literal["passed", "failed", "error"]


class CaseVerdict(BaseModel):
    name: str
    status: CaseStatus = Field(description="error: the case could not be evaluated (the audit failed).")
    thresholds: dict[str, float] = Field(description="The thresholds in force after precedence.")
    measured: dict[str, float | None] = Field(default_factory=dict)
    failures: list[GateFailure] = Field(default_factory=list)
    error: str | None = None
    audit_id: str | None = None
    seconds: float | None = None


class GateVerdict(BaseModel):
    suite: str | None = None
    status: CaseStatus = Field(description="error if any case could not be evaluated, else failed if any failed.")
    passed: bool
    cases: list[CaseVerdict]

    @classmethod
    def of(cls, cases: list[CaseVerdict], *, suite: str | None = None) -> GateVerdict:
        statuses = {c.status for c in cases}
        status: CaseStatus = "error" if "error" in statuses else "failed" if "failed" in statuses else "passed"
        return cls(suite=suite, status=status, passed=status == "passed", cases=cases)
