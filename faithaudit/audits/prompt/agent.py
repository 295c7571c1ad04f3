"""Render an agent trace to prompt tokens, keeping the token span of every tool output and every tool call.

The trace is rendered through the model's chat template once per message prefix; the difference between two
consecutive renderings is one message's text, cut at markers into its header, its fixed text, its units (each
tool call, or the tool output) and its footer. Every piece is tokenized on its own, so a prompt with a step
removed, or its output replaced, is the same pieces with that step's call and output left out or swapped: prompts
share their tokens up to the first change (what lets scoring reuse the KV cache).

Tool calls are written into the assistant turn as ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``,
one per line, and tool outputs are ``tool`` turns. When the request lists tools, the system turn lists them.

Long traces are trimmed to ``pipeline.max_prompt_tokens``: the oldest turns go first, except system turns, the
first user turn, the last ``keep_last_turns`` turns and the calls and outputs of audited steps. An unaudited
step's call and output go together. The layout records what was dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from faithaudit.api_schemas import AuditRequest
from faithaudit.api_schemas.agent import AgentPipeline, AgentTrace, ToolSpec, TraceStep, Turn
from faithaudit.audits.prompt.layout import BuiltPrompt, Source
from faithaudit.errors import InvalidRequestError

if TYPE_CHECKING:
    from faithaudit.audits.model.adapter import TextAdapter

_START = "\u2063FA_START\u2063"
_UNIT = "\u2063FA_UNIT\u2063"
_MARKS = re.compile(f"({re.escape(_START)}|{re.escape(_UNIT)})")

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


def call_text(tool: str, arguments: Mapping[str, object]) -> str:
    """One tool call as the assistant turn shows it."""
    payload = json.dumps({"name": tool, "arguments": arguments}, ensure_ascii=False)
    return f"{CALL_OPEN}\n{payload}\n{CALL_CLOSE}\n"


def tools_block(tools: Sequence[ToolSpec]) -> str:
    lines = [
        "You can call tools. To call one, answer with",
        f'{CALL_OPEN}\n{{"name": <tool name>, "arguments": <JSON object>}}\n{CALL_CLOSE}',
        "Available tools:",
    ]
    for t in tools:
        lines.append(json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters or {}}))
    return "\n".join(lines)


@dataclass(frozen=True)
class _Unit:
    step: str
    role: Literal["call", "output"]
    ids: tuple[int, ...]


@dataclass(frozen=True)
class _Message:
    header: tuple[int, ...]  # role header, up to the content
    text: tuple[int, ...]  # fixed content before the units (an assistant's words, a user turn)
    units: tuple[_Unit, ...]
    footer: tuple[int, ...]
    role: str
    origin: str

    @property
    def length(self) -> int:
        return len(self.header) + len(self.text) + sum(len(u.ids) for u in self.units) + len(self.footer)


@dataclass(frozen=True)
class TrimRecord:
    max_prompt_tokens: int
    tokens_before: int
    tokens_after: int
    dropped_turns: tuple[str, ...]  # request locations, e.g. "messages[3]"
    dropped_steps: tuple[str, ...]


@dataclass(frozen=True)
class NextAction:
    """The recorded action after a step: the next tool call (as rendered), or the final answer."""

    kind: Literal["tool_call", "final_answer"]
    message: int | None  # index of the assistant message that holds the call; None for the final answer
    target: tuple[int, ...]  # tokens to score after the header (the message's words and its first call)
    tool: str | None = None
    arguments: Mapping[str, object] | None = None


@dataclass(frozen=True)
class AgentLayout:
    """A ``SourceLayout`` over a trace's tool outputs, plus next-action prefixes (``build(upto=...)``)."""

    sources: tuple[Source, ...]
    messages: tuple[_Message, ...]
    tail: tuple[int, ...]  # the generation prompt
    steps: tuple[TraceStep, ...]  # every step left in the trace, audited or not
    trim: TrimRecord | None
    user_template: str
    granularity: Literal["tool_output"] = "tool_output"
    turns: tuple[Turn, ...] = ()  # the rendered turns (after trimming), to render variants of the trace
    trace: AgentTrace | None = None
    audited: tuple[str, ...] = ()

    reorderable = False  # a trace keeps its causal order
    insertion_length_fixed = False  # the chat template renders the whole trace again around an inserted step

    def _insertion_points(self) -> list[int]:
        """Where a placebo step may go: before an assistant turn that calls tools, from the first that calls an
        audited step on, or after the last turn. A placebo is the null an audited output is judged against, so it
        goes among the audited outputs, never before them (where it would also cost every turn after it again)."""
        calls = [k for k, t in enumerate(self.turns) if t.role == "assistant" and t.calls]
        audited = set(self.audited)
        first = next((k for k in calls if audited.intersection(self.turns[k].calls)), None)
        return [k for k in calls if first is None or k >= first] + [len(self.turns)]

    @property
    def insertion_slots(self) -> int:
        return len(self._insertion_points()) - 1

    def inserted(self, position: int, source_id: str, text: str, model: TextAdapter) -> BuiltPrompt:
        """The full prompt with a ``noop`` tool call whose output is ``text`` (a placebo step) at insertion point
        ``position``; the trace's other turns, as trimmed, stay as they are."""
        if self.trace is None:
            raise ValueError("this layout was not rendered from a trace")
        k = self._insertion_points()[position]
        call = Turn(role="assistant", calls=(source_id,), origin="placebo")
        output = Turn(role="tool", step=source_id, origin="placebo")
        step = TraceStep(id=source_id, tool="noop", arguments={}, output=text, counterfactual=None, origin="placebo")
        trace = replace(self.trace, steps=self.trace.steps + (step,))
        turns = self.turns[:k] + (call, output) + self.turns[k:]
        return _render(turns, trace, self.audited, model, self.user_template).build()

    def permuted(self, order: Sequence[int]) -> AgentLayout | None:
        """A trace keeps its causal order: there is no other order to measure."""
        return None

    @property
    def num_sources(self) -> int:
        return len(self.sources)

    def build(
        self,
        keep: Sequence[bool] | None = None,
        *,
        replace: Mapping[int, Sequence[int]] | None = None,
        upto: int | None = None,
    ) -> BuiltPrompt:
        """Prompt tokens with the steps of unkept sources removed (call and output) and the outputs in
        ``replace`` swapped. With ``upto``, stop after the header of message ``upto`` (a next-action prefix)."""
        n = self.num_sources
        if keep is not None and len(keep) != n:
            raise ValueError(f"keep has {len(keep)} entries for {n} sources")
        index = {s.id: s.index for s in self.sources}
        removed = {s.id for s in self.sources if keep is not None and not keep[s.index]}
        replace = replace or {}
        ids: list[int] = []
        spans: dict[int, tuple[int, int]] = {}
        for m, msg in enumerate(self.messages):
            if upto is not None and m == upto:
                ids.extend(msg.header)
                return BuiltPrompt(ids=tuple(ids), spans=spans)
            units = [u for u in msg.units if u.step not in removed]
            if msg.units and not units and not msg.text:
                continue  # every call of this turn, or its output, is removed: the turn goes
            ids.extend(msg.header)
            ids.extend(msg.text)
            for u in units:
                i = index.get(u.step)
                toks = u.ids
                if u.role == "output" and i is not None:
                    toks = tuple(replace.get(i, toks))
                    spans[i] = (len(ids), len(ids) + len(toks))
                ids.extend(toks)
            ids.extend(msg.footer)
        if upto is not None:
            raise ValueError(f"no message {upto}")
        ids.extend(self.tail)
        return BuiltPrompt(ids=tuple(ids), spans=spans)

    def without(self, *removed: int) -> BuiltPrompt:
        gone = set(removed)
        return self.build([i not in gone for i in range(self.num_sources)])

    def next_action(self, step_id: str, *, response_ids: Sequence[int]) -> NextAction:
        """The first assistant turn with a tool call after ``step_id``'s output; else the final answer."""
        seen_output = False
        for m, msg in enumerate(self.messages):
            if any(u.role == "output" and u.step == step_id for u in msg.units):
                seen_output = True
                continue
            calls = [u for u in msg.units if u.role == "call"]
            if seen_output and calls:
                step = next(s for s in self.steps if s.id == calls[0].step)
                return NextAction(
                    kind="tool_call",
                    message=m,
                    target=msg.text + calls[0].ids,
                    tool=step.tool,
                    arguments=step.arguments,
                )
        return NextAction(kind="final_answer", message=None, target=tuple(response_ids))


def agent_system_text(pipeline: AgentPipeline, trace: AgentTrace, system: str | None) -> str | None:
    """The system turn to add when the trace has none: the request's system prompt, then the tool list."""
    if any(t.role == "system" for t in trace.turns):
        return None
    parts = [p for p in (system, tools_block(pipeline.tools) if pipeline.tools else None) if p]
    return "\n\n".join(parts) if parts else None


def build_agent_layout(request: AuditRequest, model: TextAdapter, *, response_len: int) -> AgentLayout:
    """Render the trace (trimmed to ``pipeline.max_prompt_tokens`` when it is set) to an ``AgentLayout``."""
    pipeline = request.pipeline
    assert isinstance(pipeline, AgentPipeline)
    trace = pipeline.trace(query=request.query)
    audited = list(pipeline.audit_steps) if pipeline.audit_steps is not None else trace.auditable()
    turns = list(trace.turns)
    extra_system = agent_system_text(pipeline, trace, request.prompt.system)
    if extra_system is not None:
        turns.insert(0, Turn(role="system", text=extra_system, origin="prompt.system"))
    elif pipeline.tools:  # the trace has its own system turn: list the tools at its end
        k = next(k for k, t in enumerate(turns) if t.role == "system")
        turns[k] = Turn(role="system", text=f"{turns[k].text}\n\n{tools_block(pipeline.tools)}", origin=turns[k].origin)

    layout = _render(turns, trace, audited, model, request.query)
    budget = pipeline.max_prompt_tokens
    if budget is None:
        return layout
    before = len(layout.build().ids)
    if before + response_len <= budget:
        return layout
    dropped_turns: list[str] = []
    dropped_steps: list[str] = []
    while True:
        candidate = _oldest_droppable(turns, trace, audited, pipeline.keep_last_turns)
        if candidate is None:
            raise InvalidRequestError.for_field(
                "pipeline.max_prompt_tokens",
                f"the trace needs {len(layout.build().ids)} prompt tokens and the response {response_len} even "
                f"after trimming, over max_prompt_tokens={budget}; audit fewer steps (pipeline.audit_steps), "
                "keep fewer turns (pipeline.keep_last_turns) or raise the limit",
            )
        turns, gone_turns, gone_steps = candidate
        dropped_turns += gone_turns
        dropped_steps += gone_steps
        layout = _render(turns, trace, audited, model, request.query)
        if len(layout.build().ids) + response_len <= budget:
            break
    record = TrimRecord(
        max_prompt_tokens=budget,
        tokens_before=before,
        tokens_after=len(layout.build().ids),
        dropped_turns=tuple(dropped_turns),
        dropped_steps=tuple(dropped_steps),
    )
    return replace(layout, trim=record)


def _oldest_droppable(
    turns: list[Turn], trace: AgentTrace, audited: list[str], keep_last: int
) -> tuple[list[Turn], list[str], list[str]] | None:
    """Drop the oldest unprotected turn (an unaudited step: its call and its output). None when none is left."""
    first_user = next((k for k, t in enumerate(turns) if t.role == "user"), None)
    protected_tail = set(range(max(len(turns) - keep_last, 0), len(turns)))
    keep = set(audited)
    for k, turn in enumerate(turns):
        if turn.role == "system" or k == first_user or k in protected_tail:
            continue
        if turn.role == "tool":
            if turn.step in keep:
                continue
            return _drop_step(turns, turn.step), [turn.origin], [turn.step]
        if turn.calls:
            droppable = [c for c in turn.calls if c not in keep]
            if not droppable:
                continue
            step = droppable[0]
            return _drop_step(turns, step), [], [step]
        return turns[:k] + turns[k + 1 :], [turn.origin], []
    return None


def _drop_step(turns: list[Turn], step: str | None) -> list[Turn]:
    out: list[Turn] = []
    for t in turns:
        if t.role == "tool" and t.step == step:
            continue
        if step in t.calls:
            calls = tuple(c for c in t.calls if c != step)
            if not calls and not t.text:
                continue
            t = Turn(role=t.role, text=t.text, calls=calls, step=t.step, origin=t.origin)
        out.append(t)
    return out


def _render(
    turns: Sequence[Turn], trace: AgentTrace, audited: Sequence[str], model: TextAdapter, query: str
) -> AgentLayout:
    steps = {s.id: s for s in trace.steps}
    present = [sid for t in turns for sid in t.calls]
    chat: list[dict[str, str]] = []
    unit_specs: list[list[tuple[str, Literal["call", "output"], str]]] = []
    for t in turns:
        if t.role == "tool":
            assert t.step is not None
            units = [(t.step, "output", steps[t.step].output)]
            content = _START + _UNIT
        else:
            units = [(sid, "call", call_text(steps[sid].tool, steps[sid].arguments)) for sid in t.calls]
            text = f"{t.text}\n" if t.text and units else t.text
            content = _START + text + _UNIT * len(units)
        unit_specs.append(units)
        chat.append({"role": t.role, "content": content})

    messages: list[_Message] = []
    previous = ""
    for k, t in enumerate(turns):
        rendered = model.render_chat(chat[: k + 1], add_generation_prompt=False)
        if not rendered.startswith(previous):
            raise InvalidRequestError.for_field(
                "pipeline", f"the chat template of {model.name} does not render this trace message by message"
            )
        piece, previous = rendered[len(previous) :], rendered
        messages.append(_cut_message(piece, t, unit_specs[k], model))
    full = model.render_chat(chat, add_generation_prompt=True)
    tail = full[len(previous) :] if full.startswith(previous) else ""

    order = [sid for sid in present if sid in set(audited)]
    sources = tuple(
        Source(index=i, id=sid, kind="tool_output", document_id=sid, text=steps[sid].output)
        for i, sid in enumerate(order)
    )
    return AgentLayout(
        sources=sources,
        messages=tuple(messages),
        tail=tuple(model.encode(tail)),
        steps=tuple(steps[sid] for sid in present),
        trim=None,
        user_template=query,
        turns=tuple(turns),
        trace=trace,
        audited=tuple(audited),
    )


def _cut_message(piece: str, turn: Turn, unit_specs, model: TextAdapter) -> _Message:
    """One message's rendered text, cut at the markers into header, text, units and footer, each tokenized."""
    parts = _MARKS.split(piece)
    # parts: header, START, text, UNIT, '', UNIT, '', ..., footer
    if parts.count(_START) != 1 or parts.count(_UNIT) != len(unit_specs):
        raise InvalidRequestError.for_field(
            "pipeline", f"the chat template of {model.name} changed the content of {turn.origin}"
        )
    header, text = parts[0], parts[2]
    between = parts[4::2]  # text after each unit marker: '' between units, the footer after the last
    footer = between[-1] if between else ""  # a message without units keeps its footer in its text
    if any(between[:-1]):
        raise InvalidRequestError.for_field(
            "pipeline", f"the chat template of {model.name} changed the content of {turn.origin}"
        )
    units = tuple(_Unit(step=sid, role=role, ids=tuple(model.encode(txt))) for sid, role, txt in unit_specs)
    return _Message(
        header=tuple(model.encode(header)),
        text=tuple(model.encode(text)),
        units=units,
        footer=tuple(model.encode(footer)),
        role=turn.role,
        origin=turn.origin,
    )
