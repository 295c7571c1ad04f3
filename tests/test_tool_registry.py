"""The replay tool registry: built-ins compute, recorded tools answer from the trace or refuse."""

from __future__ import annotations

import pytest

from faithaudit.api_schemas.agent import TraceStep
from faithaudit.audits.next_action import parse_next_action, same_action
from faithaudit.tools.registry import (
    UnknownToolError,
    Unreplayable,
    calculate,
    corpus_search_tool,
    key_value_tool,
    replay_registry,
)


def _step(tool: str, arguments: dict, output: str) -> TraceStep:
    return TraceStep(id=f"{tool}#1", tool=tool, arguments=arguments, output=output, counterfactual=None, origin="")


def test_calculator_is_exact_and_refuses_code():
    assert calculate("1234 * 5678") == "7006652"
    assert calculate("(2 + 3) ** 2 / 5") == "5"
    assert calculate("7 / 2") == "3.5"
    assert calculate("1 / 0").startswith("ERROR")
    with pytest.raises(Unreplayable):
        calculate("__import__('os').system('true')")
    with pytest.raises(Unreplayable):
        calculate("9 ** 9 ** 9")


def test_recorded_tools_answer_matching_arguments_only():
    registry = replay_registry(
        [_step("weather", {"city": "Oslo"}, "rain"), _step("calculator", {"expression": "2*3"}, "6")]
    )
    assert registry.call("weather", {"city": "Oslo"}) == "rain"
    with pytest.raises(Unreplayable):
        registry.call("weather", {"city": "Bergen"})
    assert registry.call("calculator", {"expression": "6*7"}) == "42"  # the built-in computes
    with pytest.raises(UnknownToolError) as info:
        registry.call("stock_price", {})
    assert "calculator" in str(info.value) and "weather" in str(info.value)


def test_lookup_and_search_are_deterministic():
    assert key_value_tool({"a": "1"}).run({"key": "a"}) == "1"
    assert key_value_tool({"a": "1"}).run({"key": "b"}).startswith("ERROR")
    search = corpus_search_tool({"d1": "Oslo has rain today", "d2": "Glue factory in Tampere"}, k=1)
    assert search.run({"query": "rain in Oslo"}) == "[d1] Oslo has rain today"
    assert search.run({"query": "zzz"}) == "no results"


@pytest.mark.parametrize(
    ("text", "kind", "tool"),
    [
        (
            '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n</tool_call>',
            "tool_call",
            "calculator",
        ),
        ('{"name": "weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}', "tool_call", "weather"),
        ('<tool_call>\n{"name": "calculator", "argu', "unparseable", None),
        ("The answer is 42.", "final_answer", None),
        ("   ", "unparseable", None),
    ],
)
def test_next_actions_parse(text, kind, tool):
    action = parse_next_action(text)
    assert action.kind == kind and action.tool == tool


def test_same_action_compares_tool_and_arguments():
    a = parse_next_action('<tool_call>{"name": "f", "arguments": {"x": 1, "y": 2}}</tool_call>')
    b = parse_next_action('<tool_call>{"name": "f", "arguments": {"y": 2, "x": 1}}</tool_call>')
    c = parse_next_action('<tool_call>{"name": "f", "arguments": {"x": 2}}</tool_call>')
    assert same_action(a, b) and not same_action(a, c)
    assert same_action(parse_next_action("yes"), parse_next_action("no"))  # both answer in words
    assert not same_action(parse_next_action(""), parse_next_action(""))
