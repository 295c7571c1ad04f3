"""Interventions on tool outputs (agent audits), beside leave-one-out removal:

- ``unavailable``: the output replaced by ``ERROR: tool unavailable``;
- ``counterfactual``: the output replaced by the request's counterfactual, or an automatic perturbation;
- ``policy replay``: without the call and its output, how likely is the recorded next action (a tool call as
  rendered, or the final answer), and which action does the model take greedily?

The final response stays fixed and is re-scored; every prompt reuses the full trace's KV cache up to the change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from faithaudit.api_schemas.agent import UNAVAILABLE_OUTPUT
from faithaudit.api_schemas.report import NextActionReport, ReplayReport
from faithaudit.audits.agent_prompt import AgentLayout
from faithaudit.audits.counterfactuals import CounterfactualOrigin, perturb
from faithaudit.audits.model import ModelAdapter
from faithaudit.audits.next_action import parse_next_action, recorded_call, same_action
from faithaudit.audits.replay import ToolCaller, replay_to_answer
from faithaudit.audits.scoring import BaseRun, score_pairs

OnEach = Callable[[], None]


@dataclass(frozen=True)
class Counterfactual:
    text: str
    origin: CounterfactualOrigin


@dataclass(frozen=True)
class PolicyFinding:
    recorded: NextActionReport
    full: NextActionReport
    without: NextActionReport
    logprob_drop: float
    changed: bool
    changed_vs_model: bool
    replay: ReplayReport | None = None


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
    replayed from there to a final answer."""
    n = layout.num_sources
    full_memo: dict[int | None, tuple[float, NextActionReport]] = {}
    out: dict[int, PolicyFinding] = {}
    for src in layout.sources:
        i = src.index
        keep = [k != i for k in range(n)]
        action = layout.next_action(src.id, response_ids=response_ids)
        if action.kind == "tool_call":
            assert action.tool is not None and action.arguments is not None
            full_prefix = layout.build(upto=action.message).ids
            prefix = layout.build(keep, upto=action.message).ids
            recorded = recorded_call(action.tool, action.arguments, model.decode(action.target).strip())
            budget = min(max(max_new_tokens, len(action.target) + 8), 512)
        else:
            full_prefix = layout.build().ids
            prefix = layout.build(keep).ids
            recorded = NextActionReport(kind="final_answer", text=response_text)
            budget = max_new_tokens
        if action.message not in full_memo:
            if action.kind == "final_answer":
                full_lp = base.score.logprob
            else:
                (score,) = score_pairs(model, [(full_prefix, action.target)], base=base)
                full_lp = score.logprob
            full_memo[action.message] = (full_lp, _greedy_action(model, full_prefix, budget, base))
        full_lp, full_action = full_memo[action.message]
        if action.kind == "final_answer" and loo_logprobs is not None:
            without_lp = float(loo_logprobs[i])
        else:
            (score,) = score_pairs(model, [(prefix, action.target)], base=base)
            without_lp = score.logprob
        without = _greedy_action(model, prefix, budget, base)
        replay = None
        if tools is not None and replay_turns > 0:
            replay = replay_to_answer(
                model,
                layout,
                prefix,
                tools=tools,
                max_turns=replay_turns,
                max_new_tokens=budget,
                first_text=without.text,
                reuse=base.cache,
            )
        out[i] = PolicyFinding(
            recorded=recorded,
            full=full_action,
            without=without,
            logprob_drop=full_lp - without_lp,
            changed=not same_action(recorded, without),
            changed_vs_model=not same_action(full_action, without),
            replay=replay,
        )
        if on_each is not None:
            on_each()
    return out


def _greedy_action(model: ModelAdapter, prefix: Sequence[int], max_new_tokens: int, base: BaseRun) -> NextActionReport:
    generated = model.generate(prefix, max_new_tokens=max_new_tokens, reuse=base.cache)
    return parse_next_action(model.decode(generated))


# -- one line per tool call, for people ---------------------------------------------------------------------
_VERBS = {
    "decisive": "the answer depends on {id}",
    "supporting": "the answer leans on {id}",
    "distracting": "{id} pulls the answer away",
    "attended_not_relied": "{id} was read but not used",
    "relied_not_attended": "the answer depends on {id} though it got little attention",
    "unused": "{id} was ignored",
}


def copies(response: str, output: str) -> bool:
    """The response repeats a number, or three words (12+ characters), from the output."""
    numbers = set(re.findall(r"\d+(?:\.\d+)?", output))
    if any(num in numbers for num in re.findall(r"\d+(?:\.\d+)?", response)):
        return True
    words = response.split()
    runs = (" ".join(words[k : k + 3]) for k in range(len(words) - 2))
    return any(len(run) >= 12 and run in output for run in runs)


def source_reading(
    *,
    source_id: str,
    label: str | None,
    reliance: float | None,
    attention: float | None,
    copied: bool,
    policy_changed: bool | None,
) -> str:
    """``policy_changed``: whether the model's own next action changes without the output."""
    head = _VERBS.get(label or "", "{id} was not measured").format(id=source_id)
    if copied and label in ("decisive", "supporting", "relied_not_attended"):
        head = f"the answer copies {source_id}"
    facts = []
    if reliance is not None:
        facts.append(f"reliance {reliance:.2f} nats")
    if attention is not None:
        facts.append(f"attention {attention:.2f}")
    if policy_changed is not None:
        facts.append("its next action changes without it" if policy_changed else "its next action stays")
    return f"{head} ({'; '.join(facts)})" if facts else head


def agent_reading(lines: Sequence[str]) -> str:
    """'the answer copies calculator#2; weather#1 was read but not used' (the heads of the per-call lines)."""
    return "; ".join(line.split(" (")[0] for line in lines)
