"""Replay an agent to a final answer: the model acts greedily, and each tool call it makes is answered by a
tool caller (a registry from ``faithaudit.tools``: built-ins that compute, recorded tools that answer from the
trace). Stops at a final answer, an unparseable action, a call the tools cannot answer, or after ``max_turns``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from faithaudit.api_schemas.report import ReplayCall, ReplayReport
from faithaudit.audits.model.adapter import CachedContext, ModelAdapter
from faithaudit.audits.next_action import parse_next_action
from faithaudit.audits.prompt.agent import AgentLayout, call_text


class ToolCaller(Protocol):
    def call(self, name: str, arguments: Mapping[str, Any]) -> str: ...


def replay_to_answer(
    model: ModelAdapter,
    layout: AgentLayout,
    prefix: Sequence[int],
    *,
    tools: ToolCaller,
    max_turns: int,
    max_new_tokens: int,
    first_text: str | None = None,
    reuse: CachedContext | None = None,
) -> ReplayReport:
    """Continue greedily from ``prefix`` (a prompt that ends with an assistant turn's header). ``first_text`` is
    the continuation already generated from ``prefix``, if any."""
    call_footer, tool_header, tool_footer = _turn_pieces(layout)
    ids = list(prefix)
    calls: list[ReplayCall] = []
    for turn in range(max_turns + 1):
        if turn == 0 and first_text is not None:
            text = first_text
        else:
            text = model.decode(model.generate(ids, max_new_tokens=max_new_tokens, reuse=reuse))
        action = parse_next_action(text)
        if action.kind != "tool_call":
            status = "answered" if action.kind == "final_answer" else "unparseable"
            answer = action.text if status == "answered" else None
            return ReplayReport(status=status, answer=answer, calls=calls, last_text=action.text)
        if len(calls) == max_turns:
            return ReplayReport(status="max_turns", calls=calls, last_text=action.text)
        assert action.tool is not None and action.arguments is not None
        try:
            output = tools.call(action.tool, action.arguments)
        except Exception as exc:  # the registry's Unreplayable or UnknownToolError: the replay cannot go on
            calls.append(ReplayCall(tool=action.tool, arguments=action.arguments, output=None, error=str(exc)))
            return ReplayReport(status="unreplayable", calls=calls, last_text=action.text)
        calls.append(ReplayCall(tool=action.tool, arguments=action.arguments, output=output))
        ids += model.encode(call_text(action.tool, action.arguments)) + list(call_footer)
        ids += list(tool_header) + model.encode(output) + list(tool_footer) + list(layout.tail)
    return ReplayReport(status="max_turns", calls=calls)


def _turn_pieces(layout: AgentLayout) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The tokens that close an assistant call turn, and that open and close a tool turn, as rendered."""
    call = next(m for m in layout.messages if any(u.role == "call" for u in m.units))
    tool = next(m for m in layout.messages if any(u.role == "output" for u in m.units))
    return call.footer, tool.header, tool.footer
