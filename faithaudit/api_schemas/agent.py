"""Agent pipelines: a trace of tool calls and their outputs, given as ``steps`` or as OpenAI-style ``messages``.

Both forms normalise to one ``AgentTrace`` (ordered turns plus the steps they refer to). All checks happen here,
at validation time, so a bad trace is a 422 whose field names the step: ``pipeline.steps[2].tool``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from faithaudit.api_schemas.errors import PathValueError

UNAVAILABLE_OUTPUT = "ERROR: tool unavailable"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Loose(BaseModel):
    # OpenAI-style messages carry fields we do not use (refusal, annotations, ...): ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


def check_source_id(v: str) -> str:
    if not v or v != v.strip() or "[" in v or "]" in v or ":" in v:
        raise ValueError("id may not be empty or contain '[', ']', ':' or surrounding spaces")
    return v


class ToolSpec(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    parameters: dict[str, Any] | None = Field(default=None, description="JSON schema of the arguments.")

    @field_validator("parameters")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(v)
            except SchemaError as exc:
                raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        return v


class ToolStep(_Strict):
    """One tool call and its output."""

    id: str = Field(min_length=1, max_length=200, description="Unique within the trace; the source's id.")
    tool: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)
    output: str
    counterfactual: str | None = Field(default=None, description="A replacement output for the counterfactual.")

    @field_validator("id")
    @classmethod
    def _id_chars(cls, v: str) -> str:
        return check_source_id(v)


class FunctionCall(_Loose):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ChatToolCall(_Loose):
    id: str
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Loose):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ChatToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type", "text") == "text")


@dataclass(frozen=True)
class Turn:
    """One message of the normalised trace."""

    role: Literal["system", "user", "assistant", "tool"]
    text: str = ""  # system / user / assistant text; empty for a tool turn
    calls: tuple[str, ...] = ()  # step ids this assistant turn calls
    step: str | None = None  # the step whose output this tool turn carries
    origin: str = ""  # where the turn came from in the request, e.g. "messages[3]"


@dataclass(frozen=True)
class TraceStep:
    id: str
    tool: str
    arguments: dict[str, Any]
    output: str
    counterfactual: str | None
    origin: str  # "steps[1]" or "messages[6].tool_calls[0]"


@dataclass(frozen=True)
class AgentTrace:
    turns: tuple[Turn, ...]
    steps: tuple[TraceStep, ...]
    final_answer: str | None  # the trailing assistant message of the messages form, if any

    def auditable(self) -> list[str]:
        """Steps with a non-empty output: an empty output has no tokens to ablate."""
        return [s.id for s in self.steps if s.output.strip()]


class AgentPipeline(_Strict):
    """A tool-using agent's trace. Give either ``steps`` (with the query as the user turn) or ``messages``."""

    kind: Literal["agent"] = "agent"
    tools: list[ToolSpec] | None = Field(default=None, description="Listed in the system turn when given.")
    steps: list[ToolStep] | None = None
    messages: list[ChatMessage] | None = None
    counterfactuals: dict[str, str] = Field(
        default_factory=dict, description="Step id -> replacement output for the counterfactual intervention."
    )
    audit_steps: list[str] | None = Field(
        default=None, description="Step ids whose outputs are audited (default: every non-empty output)."
    )
    max_prompt_tokens: int | None = Field(
        default=None,
        ge=64,
        description="Trim the trace to this many prompt tokens (system turn, last turns and "
        "audited tool outputs are kept).",
    )
    keep_last_turns: int = Field(default=4, ge=0, le=1000, description="Turns at the end that trimming keeps.")

    @model_validator(mode="after")
    def _valid_trace(self) -> AgentPipeline:
        self.trace(query="")
        return self

    def trace(self, *, query: str) -> AgentTrace:
        """Normalise to turns and steps. Raises ``PathValueError`` naming the step for a bad trace."""
        if (self.steps is None) == (self.messages is None):
            raise PathValueError(("steps",), "give exactly one of `steps` or `messages`")
        if self.steps is not None:
            trace = _from_steps(self.steps, query)
        else:
            trace = _from_messages(self.messages or [], query)
        if not trace.auditable():
            where = "steps" if self.steps is not None else "messages"
            raise PathValueError((where,), "an agent pipeline needs at least one tool call with a non-empty output")
        self._check_tools(trace)
        known = {s.id: s for s in trace.steps}
        for k, sid in enumerate(self.audit_steps or []):
            if sid not in known:
                raise PathValueError(("audit_steps", k), f"no step has id {sid!r}")
            if not known[sid].output.strip():
                raise PathValueError(("audit_steps", k), f"step {sid!r} has an empty output: nothing to audit")
        if self.audit_steps is not None and len(set(self.audit_steps)) != len(self.audit_steps):
            raise PathValueError(("audit_steps",), "step ids repeat")
        for sid in self.counterfactuals:
            if sid not in known:
                raise PathValueError(("counterfactuals", sid), f"no step has id {sid!r}")
        if self.counterfactuals:
            trace = AgentTrace(
                turns=trace.turns,
                steps=tuple(
                    _with_counterfactual(s, self.counterfactuals.get(s.id, s.counterfactual)) for s in trace.steps
                ),
                final_answer=trace.final_answer,
            )
        return trace

    def _check_tools(self, trace: AgentTrace) -> None:
        if self.tools is None:
            return
        specs: dict[str, ToolSpec] = {}
        for i, spec in enumerate(self.tools):
            if spec.name in specs:
                raise PathValueError(("tools", i, "name"), f"tool {spec.name!r} is listed twice")
            specs[spec.name] = spec
        for step in trace.steps:
            origin = _path(step.origin)
            name_path = origin + (("tool",) if self.steps is not None else ("function", "name"))
            args_path = origin + (("arguments",) if self.steps is not None else ("function", "arguments"))
            spec = specs.get(step.tool)
            if spec is None:
                raise PathValueError(name_path, f"tool {step.tool!r} is not in pipeline.tools {sorted(specs)}")
            if spec.parameters is not None:
                from jsonschema import Draft202012Validator

                error = next(iter(Draft202012Validator(spec.parameters).iter_errors(step.arguments)), None)
                if error is not None:
                    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
                    raise PathValueError(
                        args_path, f"arguments fail the schema of tool {step.tool!r} at {where}: {error.message}"
                    )


def _with_counterfactual(step: TraceStep, replacement: str | None) -> TraceStep:
    return TraceStep(step.id, step.tool, step.arguments, step.output, replacement, step.origin)


def _path(origin: str) -> tuple[str | int, ...]:
    """'messages[6].tool_calls[0]' -> ('messages', 6, 'tool_calls', 0)."""
    out: list[str | int] = []
    for part in origin.split("."):
        name, _, rest = part.partition("[")
        out.append(name)
        for idx in rest.rstrip("]").split("]["):
            if idx:
                out.append(int(idx))
    return tuple(out)


def _from_steps(steps: list[ToolStep], query: str) -> AgentTrace:
    seen: dict[str, int] = {}
    turns: list[Turn] = [Turn(role="user", text=query, origin="query")]
    out: list[TraceStep] = []
    for i, step in enumerate(steps):
        if step.id in seen:
            raise PathValueError(("steps", i, "id"), f"{step.id!r} duplicates steps[{seen[step.id]}].id")
        seen[step.id] = i
        out.append(TraceStep(step.id, step.tool, dict(step.arguments), step.output, step.counterfactual, f"steps[{i}]"))
        turns.append(Turn(role="assistant", calls=(step.id,), origin=f"steps[{i}]"))
        turns.append(Turn(role="tool", step=step.id, origin=f"steps[{i}]"))
    return AgentTrace(turns=tuple(turns), steps=tuple(out), final_answer=None)


def _from_messages(messages: list[ChatMessage], query: str) -> AgentTrace:
    """OpenAI-style messages to a trace. A call id reused after its first call was answered (real traces do
    this) names a new step, ``id#2``; reused while the first is unanswered, it is ambiguous and refused."""
    turns: list[Turn] = []
    calls: dict[str, tuple[int, int, str, dict[str, Any]]] = {}  # step id -> (message, index, tool, arguments)
    pending: dict[str, str] = {}  # call id -> step id of its unanswered call
    uses: dict[str, int] = {}
    outputs: dict[str, str] = {}
    final_answer: str | None = None
    last = len(messages) - 1
    for i, msg in enumerate(messages):
        origin = f"messages[{i}]"
        if msg.role in ("system", "developer"):
            turns.append(Turn(role="system", text=msg.text(), origin=origin))
        elif msg.role == "user":
            turns.append(Turn(role="user", text=msg.text(), origin=origin))
        elif msg.role == "assistant" and msg.tool_calls:
            ids: list[str] = []
            for j, call in enumerate(msg.tool_calls):
                try:
                    check_source_id(call.id)
                except ValueError as exc:
                    raise PathValueError(("messages", i, "tool_calls", j, "id"), str(exc)) from None
                if call.id in pending:
                    first = calls[pending[call.id]]
                    raise PathValueError(
                        ("messages", i, "tool_calls", j, "id"),
                        f"{call.id!r} duplicates messages[{first[0]}].tool_calls[{first[1]}].id, which no tool "
                        "message has answered yet",
                    )
                uses[call.id] = uses.get(call.id, 0) + 1
                step_id = call.id if uses[call.id] == 1 else f"{call.id}#{uses[call.id]}"
                calls[step_id] = (i, j, call.function.name, _arguments(call.function.arguments, i, j))
                pending[call.id] = step_id
                ids.append(step_id)
            turns.append(Turn(role="assistant", text=msg.text(), calls=tuple(ids), origin=origin))
        elif msg.role == "assistant":
            if i == last and msg.text().strip():
                final_answer = msg.text()
            else:
                turns.append(Turn(role="assistant", text=msg.text(), origin=origin))
        else:  # tool
            cid = msg.tool_call_id
            if cid is None or cid not in pending:
                raise PathValueError(
                    ("messages", i, "tool_call_id"), f"tool message answers {cid!r}, which no unanswered call has"
                )
            step_id = pending.pop(cid)
            outputs[step_id] = msg.text()
            turns.append(Turn(role="tool", step=step_id, origin=origin))
    for step_id in pending.values():
        i, j, _, _ = calls[step_id]
        raise PathValueError(("messages", i, "tool_calls", j), f"no tool message answers call {step_id!r}")
    if not any(t.role == "user" for t in turns):
        leading = next((k for k, t in enumerate(turns) if t.role != "system"), len(turns))
        turns.insert(leading, Turn(role="user", text=query, origin="query"))
    steps = tuple(
        TraceStep(sid, tool, args, outputs[sid], None, f"messages[{i}].tool_calls[{j}]")
        for sid, (i, j, tool, args) in calls.items()
    )
    return AgentTrace(turns=tuple(turns), steps=steps, final_answer=final_answer)


def _arguments(raw: str | dict[str, Any], i: int, j: int) -> dict[str, Any]:
    if isinstance(raw, dict):
        return dict(raw)
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise PathValueError(
            ("messages", i, "tool_calls", j, "function", "arguments"), f"arguments are not valid JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise PathValueError(
            ("messages", i, "tool_calls", j, "function", "arguments"), "arguments must be a JSON object"
        )
    return value
