"""Convert recorded agent traces from other formats into audit requests (plain JSON data, no model needed).

tau-bench (Sierra's tool-agent benchmark) stores a run as OpenAI-style ``messages`` plus a reference to the
domain's system prompt, and no tool schemas. ``tau_bench_request`` cuts the run at an assistant answer (the last
one by default), so that answer is the response under audit and the turns before it are the trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faithaudit.errors import InvalidRequestError


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def answer_positions(messages: list[dict[str, Any]]) -> list[int]:
    """Indices of assistant messages that answer in words (no tool calls)."""
    return [
        i
        for i, m in enumerate(messages)
        if m.get("role") == "assistant" and not m.get("tool_calls") and (m.get("content") or "").strip()
    ]


def tau_bench_request(
    record: dict[str, Any],
    *,
    system_prompt: str | None,
    answer: int = -1,
    max_prompt_tokens: int | None = None,
    keep_last_turns: int = 4,
    audit_steps: list[str] | None = None,
    audit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit request (JSON data) for one tau-bench run, answered by its ``answer``-th assistant answer
    that follows a tool call (Python indexing: -1 is the last)."""
    messages = list(record.get("messages") or [])
    first_call = next((i for i, m in enumerate(messages) if m.get("tool_calls")), None)
    if first_call is None:
        raise InvalidRequestError.for_field("messages", f"run {record.get('id')!r} has no tool call")
    answers = [i for i in answer_positions(messages) if i > first_call]
    if not answers:
        raise InvalidRequestError.for_field("messages", f"run {record.get('id')!r} never answers after a tool call")
    try:
        cut = answers[answer]
    except IndexError:
        raise InvalidRequestError.for_field(
            "answer", f"run {record.get('id')!r} has {len(answers)} answers after a tool call"
        ) from None
    trace = [_clean(m) for m in messages[: cut + 1]]
    if system_prompt:
        trace.insert(0, {"role": "system", "content": system_prompt})
    query = next((m["content"] for m in trace if m["role"] == "user" and m.get("content")), "")
    pipeline: dict[str, Any] = {"kind": "agent", "messages": trace, "keep_last_turns": keep_last_turns}
    if max_prompt_tokens is not None:
        pipeline["max_prompt_tokens"] = max_prompt_tokens
    if audit_steps is not None:
        pipeline["audit_steps"] = audit_steps
    request: dict[str, Any] = {"query": query, "pipeline": pipeline}
    if audit:
        request["audit"] = audit
    request["model"] = {"production_model": record.get("agent_model") or "unknown"}
    return request


def _clean(message: dict[str, Any]) -> dict[str, Any]:
    keep = ("role", "content", "tool_calls", "tool_call_id", "name")
    return {k: message[k] for k in keep if k in message and message[k] is not None}
