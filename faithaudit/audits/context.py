"""The data a stage reads (``StageContext``, shared and fixed once the base pass is done) and the data the
stages produce (``Findings``, filled in stage by stage; each stage returns an updated copy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from faithaudit.api_schemas import AuditOptions, AuditRequest
from faithaudit.api_schemas.report import NextActionReport, ReplayReport
from faithaudit.audits.ablation import AblationResult
from faithaudit.audits.agent_replay import ToolCaller
from faithaudit.audits.counterfactuals import Counterfactual
from faithaudit.audits.meter import ProgressTracker
from faithaudit.audits.model.adapter import ModelAdapter, ResponseScore
from faithaudit.audits.noise import NoiseFloor
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
    stages: frozenset[str] = frozenset()  # the names of the stages this audit runs (``AuditPlan``)

    @property
    def options(self) -> AuditOptions:
        return self.request.audit

    @property
    def num_sources(self) -> int:
        return self.layout.num_sources


@dataclass(frozen=True)
class Surrogate:
    """ContextCite's surrogate as the audit reports it (``audits.ablation.AblationResult``, trimmed)."""

    weights: np.ndarray  # [n] effect of keeping each source, nats of log-odds of the whole response
    bias: float
    lds: float | None  # Spearman on masks outside the fit
    lds_method: str = "held_out"  # "cross_validation" | "held_out"
    design: str = "random"  # "exhaustive" | "random" | "adaptive"
    masks: int = 0  # masks scored for the fit
    held_out: int = 0
    interval: np.ndarray | None = None  # [n, 2] bootstrap 95% interval per weight
    banzhaf: np.ndarray | None = None  # [n] nats (exhaustive design only)
    banzhaf_range: np.ndarray | None = None  # [n, 2]

    @classmethod
    def of(cls, result: AblationResult) -> Surrogate:
        return cls(
            weights=result.surrogate.weights,
            bias=result.surrogate.bias,
            lds=result.lds,
            lds_method=result.lds_method,
            design=result.design,
            masks=result.random_masks,
            held_out=result.held_out_masks,
            interval=result.interval,
            banzhaf=result.banzhaf,
            banzhaf_range=result.banzhaf_range,
        )


@dataclass(frozen=True)
class Variant:
    """One stability variant: a sampled response, or a paraphrased query with the audited response kept."""

    kind: str  # "sampled" | "paraphrase"
    text: str  # the sampled response, or the paraphrase
    reliance: np.ndarray  # [n] leave-one-out reliance under this variant, nats
    attention: np.ndarray  # [n] attention share under this variant


@dataclass(frozen=True)
class Flip:
    without: str  # the greedy answer regenerated without the source
    changed: bool  # it no longer contains the answer span


@dataclass(frozen=True)
class FlipCheck:
    """Whether answer flips may set labels: the greedy answer must be stable under the full context."""

    answer_span: tuple[str, ...]
    margin: float | None  # smallest top-1 minus top-2 log-prob over the answer span, nats
    placebo_flip_rate: float | None  # share of placebo insertions that flip the answer (None: not measured)
    counted: bool
    max_new_tokens: int  # regenerations stop here: the response through the answer span, + 8


@dataclass(frozen=True)
class Placebos:
    texts: tuple[str, ...]
    positions: tuple[int, ...]
    prompts: tuple[tuple[int, ...], ...]  # the full prompt with each placebo inserted
    noise: NoiseFloor
    keeps_answer: tuple[bool, ...] | None = None  # the greedy answer after each keeps the span (flips will ask)


@dataclass(frozen=True)
class Orders:
    """The documents in other seeded orders; the given order's leave-one-out is ``Findings.reliance``. Only the
    sources whose label an order could change are re-scored (``noise.order_sensitive``); the others are NaN."""

    permutations: tuple[tuple[str, ...], ...]  # document ids in prompt order; the given order first
    others: np.ndarray  # [orders - 1, n] leave-one-out reliance in each other order, nats; NaN: not re-scored
    logprob_full_others: np.ndarray  # [orders - 1] log p(response | full context) in each other order (NaN: none)

    @property
    def rescored(self) -> np.ndarray:
        """[n] bool: the sources re-scored in every other order."""
        return ~np.isnan(self.others).any(axis=0)

    def reliance(self, given: np.ndarray) -> np.ndarray:
        """[orders, n]: the given order's reliance, then each other order's."""
        return np.vstack([given, self.others])


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
    attention_baseline: AttentionReading | None = None  # every source replaced by neutral text
    loo_logprobs: np.ndarray | None = None  # [n] log p(response | without source i)
    loo_token_logprobs: np.ndarray | None = None  # [n, response_len] the same per response token
    reliance: np.ndarray | None = None  # [n] leave-one-out reliance, nats
    loo_scores: tuple[ResponseScore, ...] = ()  # [n] the leave-one-out passes (answer flips read their argmaxes)
    no_context: ResponseScore | None = None
    reused: tuple[tuple[np.ndarray, ResponseScore], ...] = ()  # (mask, score) passes an adaptive fit may reuse
    surrogate: Surrogate | None = None
    flips: dict[int, Flip] = field(default_factory=dict)
    flip_check: FlipCheck | None = None
    placebos: Placebos | None = None
    orders: Orders | None = None
    unavailable: dict[int, float] = field(default_factory=dict)  # reliance with the output unavailable
    counterfactual: dict[int, float] = field(default_factory=dict)
    counterfactual_outputs: dict[int, Counterfactual] = field(default_factory=dict)
    policy: dict[int, PolicyFinding] = field(default_factory=dict)
    variants: tuple[Variant, ...] = ()  # stability: sampled responses and query paraphrases
    mechanism: tuple = ()  # stages.mechanism.MechanismFinding per traced source
