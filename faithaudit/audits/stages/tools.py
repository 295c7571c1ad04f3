"""Interventions on tool outputs (agent audits), beside leave-one-out removal:

- ``unavailable``: the output replaced by ``ERROR: tool unavailable``;
- ``counterfactual``: the output replaced by the request's counterfactual, or an automatic perturbation;
- ``policy replay``: without the call and its output, how likely is the recorded next action (a tool call as
  rendered, or the final answer), and which action does the model take greedily?

The final response stays fixed and is re-scored; every prompt reuses the full trace's KV cache up to the change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from faithaudit.api_schemas.agent import UNAVAILABLE_OUTPUT
from faithaudit.api_schemas.report import NextActionReport
from faithaudit.audits.agent_replay import ToolCaller, replay_to_answer
from faithaudit.audits.context import Findings, PolicyFinding, StageContext
from faithaudit.audits.counterfactuals import Counterfactual, perturb
from faithaudit.audits.decoding import generate_many
from faithaudit.audits.model.adapter import ModelAdapter
from faithaudit.audits.next_action import parse_next_action, recorded_call, same_action
from faithaudit.audits.plan import register_stage
from faithaudit.audits.prompt.agent import AgentLayout, NextAction
from faithaudit.audits.scoring import BaseRun, score_pairs
from faithaudit.errors import FaithauditError

OnEach = Callable[[], None]


def _per_source(options, num_sources: int) -> int:
    return num_sources


@register_stage("tool_unavailable", passes=_per_source, order=50)
def tool_unavailable(ctx: StageContext, found: Findings) -> Findings:
    measured = replaced_reliance(
        ctx.model,
        ctx.layout,
        ctx.response_ids,
        ctx.base,
        unavailable_outputs(ctx.layout),
        on_each=ctx.progress.ticker("tool_unavailable"),
    )
    return replace(found, unavailable=measured)


@register_stage("tool_counterfactual", passes=_per_source, order=60)
def tool_counterfactual(ctx: StageContext, found: Findings) -> Findings:
    outputs = counterfactual_outputs(ctx.layout)
    measured = replaced_reliance(
        ctx.model,
        ctx.layout,
        ctx.response_ids,
        ctx.base,
        {i: c.text for i, c in outputs.items()},
        on_each=ctx.progress.ticker("tool_counterfactual"),
    )
    ctx.progress.step("tool_counterfactual", ctx.num_sources - len(outputs))  # outputs with nothing to change
    return replace(found, counterfactual=measured, counterfactual_outputs=outputs)


@register_stage("policy_replay", passes=_per_source, order=70, reads=("leave_one_out",))
def policy_replay_stage(ctx: StageContext, found: Findings) -> Findings:
    turns = ctx.options.replay_turns
    if turns and ctx.tools is None:
        raise FaithauditError("audit.replay_turns needs a tool registry: pass `tools` to run_audit")
    measured = policy_replay(
        ctx.model,
        ctx.layout,
        ctx.response_ids,
        ctx.base,
        response_text=ctx.response_text,
        max_new_tokens=ctx.request.model.max_new_tokens,
        loo_logprobs=found.loo_logprobs,
        tools=ctx.tools(ctx.layout) if ctx.tools is not None and turns else None,
        replay_turns=turns,
        on_each=ctx.progress.ticker("policy_replay"),
    )
    return replace(found, policy=measured)


def replaced_reliance(
    model: ModelAdapter,
    layout: AgentLayout,
    response_ids: Sequence[int],
    base: BaseRun,
    replacements: dict[int, str],
    *,
    on_each: OnEach | None = None,
) -> dict[int, float]:
    """log p(response | full) - log p(response | output i replaced), per source in ``replacements``."""
    order = sorted(replacements)
    pairs = [(layout.build(replace={i: model.encode(replacements[i])}).ids, response_ids) for i in order]
    scores = score_pairs(model, pairs, base=base, on_each=on_each)
    return {i: base.score.logprob - s.logprob for i, s in zip(order, scores, strict=True)}


def unavailable_outputs(layout: AgentLayout) -> dict[int, str]:
    return {s.index: UNAVAILABLE_OUTPUT for s in layout.sources}


def counterfactual_outputs(layout: AgentLayout) -> dict[int, Counterfactual]:
    """The request's counterfactual for a step, else an automatic perturbation (none when nothing to change)."""
    steps = {s.id: s for s in layout.steps}
    out: dict[int, Counterfactual] = {}
    for src in layout.sources:
        given = steps[src.id].counterfactual
        if given is not None:
            out[src.index] = Counterfactual(given, "request")
        elif (changed := perturb(src.text)) is not None:
            out[src.index] = Counterfactual(*changed)
    return out


@dataclass(frozen=True)
class _Prefixes:
    """The next action after one output: its prefix with the full trace and without the output, and its budget."""

    action: NextAction
    full: tuple[int, ...]
    without: tuple[int, ...]
    recorded: NextActionReport
    budget: int  # new tokens a greedy action may take


def _prefixes(model: ModelAdapter, layout: AgentLayout, i: int, response_ids, *, response_text: str, max_new: int):
    keep = [k != i for k in range(layout.num_sources)]
    action = layout.next_action(layout.sources[i].id, response_ids=response_ids)
    if action.kind == "final_answer":
        recorded = NextActionReport(kind="final_answer", text=response_text)
        return _Prefixes(action, layout.build().ids, layout.build(keep).ids, recorded, max_new)
    if action.tool is None or action.arguments is None:
        raise ValueError(f"next action of {layout.sources[i].id} is a tool call without a tool")
    recorded = recorded_call(action.tool, action.arguments, model.decode(action.target).strip())
    budget = min(max(max_new, len(action.target) + 8), 512)
    full, without = layout.build(upto=action.message).ids, layout.build(keep, upto=action.message).ids
    return _Prefixes(action, full, without, recorded, budget)


def policy_replay(
    model: ModelAdapter,
    layout: AgentLayout,
    response_ids: Sequence[int],
    base: BaseRun,
    *,
    response_text: str,
    max_new_tokens: int,
    loo_logprobs: np.ndarray | None = None,
    tools: ToolCaller | None = None,
    replay_turns: int = 0,
    on_each: OnEach | None = None,
) -> dict[int, PolicyFinding]:
    """For each audited output: the drop in log p of the recorded next action without it, and the action the
    model takes greedily with the full trace and without it; with ``tools`` and ``replay_turns``, the agent
    replayed from there to a final answer. The full-trace side is computed once per next action."""
    prefixes = [
        _prefixes(model, layout, i, response_ids, response_text=response_text, max_new=max_new_tokens)
        for i in range(layout.num_sources)
    ]
    full_actions, without_actions = _greedy_actions(model, prefixes, base)
    full_logprobs: dict[int | None, float] = {}
    out: dict[int, PolicyFinding] = {}
    for i, p in enumerate(prefixes):
        final = p.action.kind == "final_answer"
        if p.action.message not in full_logprobs:
            full_lp = base.score.logprob if final else _target_logprob(model, p.full, p.action.target, base)
            full_logprobs[p.action.message] = full_lp
        full_lp, full_action = full_logprobs[p.action.message], full_actions[p.action.message]
        if final and loo_logprobs is not None:
            without_lp = float(loo_logprobs[i])
        else:
            without_lp = _target_logprob(model, p.without, p.action.target, base)
        without = without_actions[i]
        replay = None
        if tools is not None and replay_turns > 0:
            replay = replay_to_answer(
                model, layout, p.without, tools=tools, max_turns=replay_turns, max_new_tokens=p.budget,
                first_text=without.text, reuse=base.cache,
            )  # fmt: skip
        out[i] = PolicyFinding(
            recorded=p.recorded,
            full=full_action,
            without=without,
            logprob_drop=full_lp - without_lp,
            changed=not same_action(p.recorded, without),
            changed_vs_model=not same_action(full_action, without),
            replay=replay,
        )
        if on_each is not None:
            on_each()
    return out


def _target_logprob(model: ModelAdapter, prefix: Sequence[int], target: Sequence[int], base: BaseRun) -> float:
    (score,) = score_pairs(model, [(prefix, target)], base=base)
    return score.logprob


def _greedy_actions(
    model: ModelAdapter, prefixes: Sequence[_Prefixes], base: BaseRun
) -> tuple[dict[int | None, NextActionReport], list[NextActionReport]]:
    """The action the model takes greedily with the full trace (once per next action) and without each output,
    all decoded together from the full trace's cache, each row to its own budget (``decoding.generate_many``)."""
    rows: list[tuple[tuple[int, ...], int]] = []  # (prefix, budget)
    full_rows: dict[int | None, int] = {}
    for p in prefixes:
        if p.action.message not in full_rows:
            full_rows[p.action.message] = len(rows)
            rows.append((p.full, p.budget))
    without_rows = list(range(len(rows), len(rows) + len(prefixes)))
    rows += [(p.without, p.budget) for p in prefixes]
    decoded = generate_many(model, [r[0] for r in rows], [r[1] for r in rows], [base.cache] * len(rows))
    actions = [parse_next_action(model.decode(ids)) for ids in decoded]
    full = {message: actions[r] for message, r in full_rows.items()}
    return full, [actions[r] for r in without_rows]
