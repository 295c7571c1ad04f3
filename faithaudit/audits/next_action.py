"""Read the action an agent's continuation takes: a tool call, a final answer, or something unparseable."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from faithaudit.api_schemas.report import NextActionReport
from faithaudit.audits.prompt.agent import CALL_CLOSE, CALL_OPEN

_CALL = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CALL_CLOSE) + r"|$)", re.S)
_PUNCT = re.compile(r"[^\w\s]")


def parse_next_action(text: str) -> NextActionReport:
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (or a bare JSON call) is a tool call; other
    words are a final answer; an empty text or a call that does not parse is ``unparseable``."""
    raw = text.strip()
    match = _CALL.search(raw)
    body = match.group(1) if match else (raw if raw.startswith("{") else None)
    if body is not None:
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            args = value.get("arguments", {})
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except ValueError:
                    args = None
            if isinstance(args, dict):
                return NextActionReport(kind="tool_call", tool=value["name"], arguments=args, text=raw)
        return NextActionReport(kind="unparseable", text=raw)
    if not raw:
        return NextActionReport(kind="unparseable", text=raw)
    return NextActionReport(kind="final_answer", text=raw)


def recorded_call(tool: str, arguments: Mapping[str, object], text: str) -> NextActionReport:
    return NextActionReport(kind="tool_call", tool=tool, arguments=dict(arguments), text=text)


def same_action(a: NextActionReport, b: NextActionReport) -> bool:
    """Same kind; for tool calls also the same tool and arguments. Two final answers are the same action (what
    they say is measured by reliance and answer flips); ``unparseable`` never matches."""
    if a.kind != b.kind or a.kind == "unparseable":
        return False
    if a.kind == "tool_call":
        return a.tool == b.tool and canonical_arguments(a.arguments) == canonical_arguments(b.arguments)
    return True


def canonical_arguments(args: Mapping[str, object] | None) -> str:
    return json.dumps(args or {}, sort_keys=True, ensure_ascii=False)
