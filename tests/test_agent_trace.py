"""Agent traces: validation errors name the step; OpenAI messages and real tau-bench runs convert and render."""

from __future__ import annotations

import copy
import json

import pytest
from cases import SHARED_BENCHMARKS, load_example
from pydantic import ValidationError
from typer.testing import CliRunner

from faithaudit.api_schemas import AuditRequest, validation_fields
from faithaudit.audits.prompt.agent import build_agent_layout
from faithaudit.cli import app
from faithaudit.tools.traces import iter_jsonl, tau_bench_request

CASE = load_example("agent_case.json")
TAU_RUNS = SHARED_BENCHMARKS / "tau_bench_airline_gpt4o_traces.jsonl"
TAU_SYSTEM = SHARED_BENCHMARKS / "tau_bench_airline_system_prompt.md"


def _fields(body: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        AuditRequest.model_validate(body)
    return validation_fields(info.value)


def _case(mutate) -> dict:
    body = copy.deepcopy(CASE)
    mutate(body["pipeline"])
    return body


def _messages(*messages: dict) -> dict:
    return {"query": "q", "pipeline": {"kind": "agent", "messages": list(messages)}}


def _call(cid: str, name: str = "calculator", arguments: str = '{"expression": "1+1"}') -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


BAD_TRACES = {
    "tool_not_in_tools": (
        _case(lambda p: p["steps"][1].update(tool="stock_price")),
        "pipeline.steps[1].tool",
        "not in pipeline.tools",
    ),
    "arguments_fail_schema": (
        _case(lambda p: p["steps"][2].update(arguments={"expression": 42})),
        "pipeline.steps[2].arguments",
        "fail the schema",
    ),
    "missing_required_argument": (
        _case(lambda p: p["steps"][0].update(arguments={})),
        "pipeline.steps[0].arguments",
        "'city' is a required property",
    ),
    "no_steps": (_case(lambda p: p.update(steps=[])), "pipeline.steps", "at least one tool call"),
    "duplicate_step_ids": (
        _case(lambda p: p["steps"][2].update(id="weather#1")),
        "pipeline.steps[2].id",
        "duplicates steps[0].id",
    ),
    "tool_message_without_call": (
        _messages(
            {"role": "user", "content": "1+1?"},
            {"role": "tool", "tool_call_id": "call_9", "content": "2"},
        ),
        "pipeline.messages[1].tool_call_id",
        "no unanswered call",
    ),
    "call_without_output": (
        _messages({"role": "user", "content": "1+1?"}, {"role": "assistant", "tool_calls": [_call("c1")]}),
        "pipeline.messages[1].tool_calls[0]",
        "no tool message answers",
    ),
    "duplicate_pending_call_id": (
        _messages(
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "tool_calls": [_call("c1"), _call("c1")]},
            {"role": "tool", "tool_call_id": "c1", "content": "2"},
        ),
        "pipeline.messages[1].tool_calls[1].id",
        "duplicates",
    ),
    "arguments_not_json": (
        _messages(
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "tool_calls": [_call("c1", arguments="{expression: 1+1")]},
            {"role": "tool", "tool_call_id": "c1", "content": "2"},
        ),
        "pipeline.messages[1].tool_calls[0].function.arguments",
        "not valid JSON",
    ),
    "steps_and_messages": (
        _case(lambda p: p.update(messages=[{"role": "user", "content": "x"}])),
        "pipeline.steps",
        "exactly one",
    ),
    "unknown_audit_step": (_case(lambda p: p.update(audit_steps=["nope#9"])), "pipeline.audit_steps[0]", "no step"),
}


@pytest.mark.parametrize("name", sorted(BAD_TRACES))
def test_bad_trace_names_the_step(name):
    body, path, words = BAD_TRACES[name]
    fields = _fields(body)
    assert any(p == path and words in msg for p, msg in fields), fields


def test_tool_methods_refused_on_rag_requests():
    body = load_example("fictional_fact.json")
    body["audit"]["methods"] = ["leave_one_out", "policy_replay"]
    assert ("audit.methods[1]", "policy_replay applies to agent pipelines only") in _fields(body)


def test_bad_trace_exits_2_in_the_cli(tmp_path):
    body, path, _ = BAD_TRACES["tool_not_in_tools"]
    case = tmp_path / "case.json"
    case.write_text(json.dumps(body))
    result = CliRunner().invoke(app, ["audit", str(case)])
    assert result.exit_code == 2 and path in result.output and "Traceback" not in result.output


def test_openai_messages_convert_to_steps():
    body = _messages(
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1+1, twice?"},
        {"role": "assistant", "content": None, "tool_calls": [_call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "assistant", "content": "Once more.", "tool_calls": [_call("c1", arguments={"expression": "2"})]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "2"}]},
        {"role": "assistant", "content": "1+1 = 2."},
    )
    request = AuditRequest.model_validate(body)
    trace = request.pipeline.trace(query=request.query)
    assert [s.id for s in trace.steps] == ["c1", "c1#2"]  # a call id reused after its answer is a new step
    assert trace.steps[1].arguments == {"expression": "2"} and trace.steps[1].output == "2"
    assert trace.final_answer == "1+1 = 2."
    assert [t.role for t in trace.turns] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert request.audit.methods[-3:] == ["tool_unavailable", "tool_counterfactual", "policy_replay"]


def test_agent_layout_spans_and_interventions(model):
    request = AuditRequest.model_validate(CASE)
    layout = build_agent_layout(request, model, response_len=16)
    full = layout.build()
    for src in layout.sources:  # each span decodes to exactly the tool output
        a, b = full.spans[src.index]
        assert model.decode(full.ids[a:b]) == src.text
    # removing a step drops its call and its output; other steps keep their tokens
    without = model.decode(layout.without(0).ids)
    assert "light rain" not in without and '"city": "Oslo"' not in without
    assert '"calculator"' in without and "7006652" in without
    # a replaced output changes only that output, and the prompt shares the prefix before it
    replaced = layout.build(replace={2: model.encode("ERROR: tool unavailable")})
    a, _ = full.spans[2]
    assert replaced.ids[:a] == full.ids[:a] and "ERROR: tool unavailable" in model.decode(replaced.ids[a:])
    # the next action after weather#1 is the recorded company_lookup call, scored after its turn header
    action = layout.next_action("weather#1", response_ids=model.encode(request.response))
    assert action.kind == "tool_call" and action.tool == "company_lookup"
    prefix = layout.build(upto=action.message).ids
    assert full.ids[: len(prefix) + len(action.target)] == prefix + action.target
    assert layout.next_action("calculator#3", response_ids=[1]).kind == "final_answer"


def test_three_tau_bench_runs_convert_and_render(model):
    """Real GPT-4o tau-bench runs (no tool schemas, call ids reused, empty `think` outputs) convert and render."""
    system = TAU_SYSTEM.read_text()
    converted = 0
    for record in iter_jsonl(TAU_RUNS):
        if not any(m.get("tool_calls") for m in record["messages"]):
            continue
        body = tau_bench_request(record, system_prompt=system, max_prompt_tokens=3000, keep_last_turns=2)
        trace = AuditRequest.model_validate(body).pipeline.trace(query="")
        assert trace.final_answer and trace.steps
        body["pipeline"]["audit_steps"] = trace.auditable()[-2:]
        request = AuditRequest.model_validate(body)
        layout = build_agent_layout(request, model, response_len=len(model.encode(trace.final_answer)))
        prompt = layout.build()
        assert len(prompt.ids) + len(model.encode(trace.final_answer)) <= 3000
        assert layout.trim is not None and layout.trim.tokens_after < layout.trim.tokens_before
        assert [s.id for s in layout.sources] == trace.auditable()[-2:] and set(prompt.spans) == {0, 1}
        assert all(model.decode(prompt.ids[a:b]) == layout.sources[i].text for i, (a, b) in prompt.spans.items())
        converted += 1
        if converted == 3:
            break
    assert converted == 3


def test_trace_that_cannot_fit_is_a_field_error(model):
    from faithaudit.errors import InvalidRequestError

    record = next(iter_jsonl(TAU_RUNS))
    body = tau_bench_request(record, system_prompt=TAU_SYSTEM.read_text(), max_prompt_tokens=2000)
    with pytest.raises(InvalidRequestError) as info:  # every output is audited, so none may be trimmed
        build_agent_layout(AuditRequest.model_validate(body), model, response_len=64)
    assert info.value.fields[0].path == "pipeline.max_prompt_tokens"


def test_placebo_steps_go_where_the_audited_outputs_are(model):
    """A placebo is the null an audited output is judged against: in a trace whose earlier tool steps are not
    audited, every insertion point is at or after the first audited step's call turn, the first one right there."""
    system = TAU_SYSTEM.read_text()
    record = next(r for r in iter_jsonl(TAU_RUNS) if sum(bool(m.get("tool_calls")) for m in r["messages"]) >= 4)
    body = tau_bench_request(record, system_prompt=system, max_prompt_tokens=3000, keep_last_turns=2)
    trace = AuditRequest.model_validate(body).pipeline.trace(query="")
    body["pipeline"]["audit_steps"] = trace.auditable()[-2:]
    request = AuditRequest.model_validate(body)
    layout = build_agent_layout(request, model, response_len=len(model.encode(trace.final_answer)))
    full = layout.build().ids

    def first_difference(ids) -> int:  # an insertion after the last turn extends the generation prompt's tokens
        return next((i for i, (a, b) in enumerate(zip(ids, full, strict=False)) if a != b), len(full))

    first_audited_call = first_difference(layout.without(0).ids)  # its call turn is where the trace loses it
    assert any(s.id not in request.pipeline.audit_steps for s in layout.steps[:1])  # an earlier unaudited step
    starts = [first_difference(layout.inserted(k, "placebo-0", "noise", model).ids)
              for k in range(layout.insertion_slots + 1)]  # fmt: skip
    assert all(s >= first_audited_call for s in starts) and starts[0] < first_audited_call + 16  # right before it
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    calls = [k for k, t in enumerate(layout.turns) if t.role == "assistant" and t.calls]
    first = next(k for k in calls if set(layout.turns[k].calls) & set(request.pipeline.audit_steps))
    assert layout.insertion_slots == sum(k >= first for k in calls) < len(calls)  # every call from there on
