"""The data a stage reads (``StageContext``, shared and fixed once the base pass is done) and the data the
stages produce (``Findings``, filled in stage by stage; each stage returns an updated copy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from faithaudit.api_schemas import AuditOptions, AuditRequest
from faithaudit.api_schemas.report import NextActionReport, ReplayReport
from faithaudit.audits.agent_replay import ToolCaller
from faithaudit.audits.counterfactuals import Counterfactual
from faithaudit.audits.meter import ProgressTracker
from faithaudit.audits.model.adapter import ModelAdapter, ResponseScore
from faithaudit.audits.prompt.layout import SourceLayout
from faithaudit.audits.provenance import AttentionReading
from faithaudit.audits.reliance import SurrogateSolver
from faithaudit.audits.scoring import BaseRun

ToolFactory = Callable[[SourceLayout], ToolCaller]  # builds the tool registry an agent replay calls


@dataclass(frozen=True)
class StageContext:
    request: AuditRequest
    model: ModelAdapter
    layout: SourceLayout
    response_text: str
    response_ids: list[int]
    base: BaseRun  # the full-context pass: score, attention, KV cache
    progress: ProgressTracker
    solver: SurrogateSolver | None = None  # context_ablation: None = Lasso(audit.lasso_alpha)
    tools: ToolFactory | None = None  # agent replays (audit.replay_turns)

    @property
    def options(self) -> AuditOptions:
        return self.request.audit

    @property
    def num_sources(self) -> int:
        return self.layout.num_sources


@dataclass(frozen=True)
class Surrogate:
    weights: np.ndarray  # [n] effect of keeping each source on the logit-probability target (unstandardised)
    bias: float
    lds: float | None  # Spearman on held-out masks


@dataclass(frozen=True)
class Flip:
    without: str  # the greedy answer regenerated without the source
    changed: bool


@dataclass(frozen=True)
class PolicyFinding:
    """Policy replay of one tool output: the recorded next action, the model's with and without the output."""

    recorded: NextActionReport
    full: NextActionReport
    without: NextActionReport
    logprob_drop: float  # log p(recorded action | full) - log p(recorded action | without), nats
    changed: bool  # vs the recorded action
    changed_vs_model: bool  # vs the model's own full-trace action
    replay: ReplayReport | None = None


@dataclass(frozen=True)
class Findings:
    """Everything measured so far. Stages fill their fields; the report reads them."""

    answer_full: str | None = None  # the model's greedy answer under the full context, when generated
    attention: AttentionReading | None = None
    loo_logprobs: np.ndarray | None = None  # [n] log p(response | without source i)
    reliance: np.ndarray | None = None  # [n] leave-one-out reliance, nats
    no_context: ResponseScore | None = None
    reused: tuple[tuple[np.ndarray, ResponseScore], ...] = ()  # (mask, score) passes an adaptive fit may reuse
    surrogate: Surrogate | None = None
    flips: dict[int, Flip] = field(default_factory=dict)
    unavailable: dict[int, float] = field(default_factory=dict)  # reliance with the output unavailable
    counterfactual: dict[int, float] = field(default_factory=dict)
    counterfactual_outputs: dict[int, Counterfactual] = field(default_factory=dict)
    policy: dict[int, PolicyFinding] = field(default_factory=dict)
