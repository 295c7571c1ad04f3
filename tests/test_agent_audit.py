"""Agent audits with the real model: the answer copies one tool output and ignores two others."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cases import load_example

from faithaudit.api_schemas import AuditRequest
from faithaudit.audits.prompt.agent import build_agent_layout
from faithaudit.audits.scoring import score_full_context, score_pairs
from faithaudit.audits.stages.tools import replaced_reliance, unavailable_outputs

CASE = load_example("agent_case.json")  # weather#1 and company#2 are ignored; the answer copies calculator#3


@pytest.fixture(scope="module")
def report(golden_reports):
    """The golden agent audit (``cases.golden_request("agent")``: 8 masks, 3 flips, one replayed turn)."""
    return golden_reports["agent"]


def _source(report, sid):
    return next(s for s in report.sources if s.id == sid)


def test_the_copied_output_ranks_first_and_the_others_barely_matter(report):
    calc, weather, company = (_source(report, s) for s in ("calculator#3", "weather#1", "company#2"))
    assert all(s.kind == "tool_output" for s in report.sources) and report.granularity == "tool_output"
    assert calc.reliance_rank == 1 and calc.label == "decisive"
    assert calc.reliance > 5 and max(weather.reliance, company.reliance) < 2
    # replacing the number by an error or a perturbed number also hurts the answer
    assert calc.reliance_unavailable > 5 and calc.reliance_counterfactual > 5
    assert calc.counterfactual_origin == "numbers_changed" and calc.counterfactual_output != calc.text
    assert company.counterfactual_origin == "numbers_changed"  # "founded in 1987" changed
    assert report.summary.context_reliance > 5 and report.summary.parametric is False
    assert calc.tool == "calculator" and calc.arguments == {"expression": "1234 * 5678"}
    assert report.agent.reading.startswith("the answer copies calculator#3") or "copies calculator#3" in calc.reading


def test_regenerating_without_the_copied_output_loses_the_number(report):
    calc, weather = _source(report, "calculator#3"), _source(report, "weather#1")
    assert report.summary.answer_span == "7006652"  # what the answer adds to the query
    assert "7006652" not in calc.answer_without and calc.answer_changed is True
    # only sources above the noise floor (placebo noop steps) are regenerated: weather#1 is within the noise
    assert weather.reliance < report.summary.noise_floor_nats and weather.answer_without is None
    assert weather.reliance_interval == pytest.approx(
        (weather.reliance - report.summary.noise_floor_nats, weather.reliance + report.summary.noise_floor_nats),
        abs=1e-5,
    )  # a trace keeps its causal order: reliance +- floor


def test_policy_replay_gives_structured_actions_and_finite_drops(report):
    for s in report.sources:
        assert s.next_action_without.kind in ("tool_call", "final_answer", "unparseable")
        assert s.next_action_full is not None and math.isfinite(s.next_action_logprob_drop)
        if s.next_action_without.kind == "tool_call":
            assert s.next_action_without.tool and isinstance(s.next_action_without.arguments, dict)
        assert isinstance(s.policy_changed, bool) and isinstance(s.policy_changed_vs_model, bool)
    weather = _source(report, "weather#1")  # after weather#1 the trace calls company_lookup
    assert weather.next_action_recorded.kind == "tool_call" and weather.next_action_recorded.tool == "company_lookup"
    calc = _source(report, "calculator#3")  # the last call: its next action is the final answer
    assert calc.next_action_recorded.kind == "final_answer"
    assert calc.next_action_logprob_drop == pytest.approx(calc.reliance, abs=1e-6)


def test_replay_runs_new_calls_through_the_registry(report):
    for s in report.sources:
        replay = s.replay_without
        assert replay.status in ("answered", "unreplayable", "unparseable", "max_turns")
        assert len(replay.calls) <= 1
        for call in replay.calls:  # each call got an output from the registry, or the reason it could not
            assert (call.output is None) != (call.error is None)
        if replay.status == "answered":
            assert replay.answer
        if s.next_action_without.kind == "tool_call":
            assert replay.calls and replay.calls[0].tool == s.next_action_without.tool


def test_tool_interventions_with_prefix_reuse_equal_fresh_passes(model):
    request = AuditRequest.model_validate(CASE)
    layout = build_agent_layout(request, model, response_len=16)
    response = model.encode(request.response)
    base = score_full_context(model, layout, response, with_attention=False)
    reused = replaced_reliance(model, layout, response, base, unavailable_outputs(layout))
    _, tokens_before = model.counter.snapshot()
    for i, drop in reused.items():
        prompt = layout.build(replace={i: model.encode("ERROR: tool unavailable")}).ids
        fresh, _ = model.score(prompt, response)
        assert base.score.logprob - fresh.logprob == pytest.approx(drop, abs=1e-3)
    # next-action prefixes too
    action = layout.next_action("weather#1", response_ids=response)
    prefix = layout.build([False, True, True], upto=action.message).ids
    (via_cache,) = score_pairs(model, [(prefix, action.target)], base=base)
    fresh, _ = model.score(prefix, action.target)
    assert np.allclose(via_cache.token_logprobs, fresh.token_logprobs, atol=1e-3)
    assert tokens_before > 0
