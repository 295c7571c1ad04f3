"""OTLP/JSON traces (an OpenTelemetry collector's file exporter, the OTLP/HTTP JSON body, or the protobuf message
as JSON) with OpenInference attributes, or the OpenTelemetry GenAI ones where they carry the same facts, as one
audit request.

A trace whose last LLM call saw tool calls or tool results (or that has TOOL spans) becomes an ``agent`` request
(the last LLM call's input messages are the trace, its output the response); a trace with RETRIEVER spans becomes
a ``rag`` request (the retrieved documents, the retriever's query, the last LLM call's answer, and the production
prompt rebuilt from the messages the model really saw). Several LLM calls: the last answer is audited, and a note
says so. The production model's name becomes ``model.production_model``; trace and span ids go to ``metadata``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from faithaudit.importers.errors import ImportFormatError

LLM_OPERATIONS = ("chat", "text_completion", "generate_content")
_INDEXED = re.compile(r"^(?P<n>\d{1,6})\.(?P<rest>.+)$")
MAX_INDEX = 10_000  # retrieved documents, messages or tools in one span
MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    name: str
    start: int
    end: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        kind = str(self.attrs.get("openinference.span.kind", "")).upper()
        if kind:
            return kind
        operation = self.attrs.get("gen_ai.operation.name")
        if operation in LLM_OPERATIONS:
            return "LLM"
        return "TOOL" if operation == "execute_tool" else ""

    def where(self, attribute: str | None = None) -> str:
        at = f"span '{self.name}' ({self.span_id})"
        return at if attribute is None else f"{at} attribute {attribute}"


# -- reading OTLP/JSON -----------------------------------------------------------------------------------------


def read_spans(data: Any) -> list[Span]:
    """Every span of an OTLP/JSON document, or of a list of them (JSON Lines), ordered by start time."""
    documents = data if isinstance(data, list) else [data]
    spans = []
    for d, document in enumerate(documents):
        if not isinstance(document, dict) or "resourceSpans" not in document:
            raise ImportFormatError.at(f"document {d}", "not OTLP/JSON: expected an object with resourceSpans")
        for r, resource in enumerate(_list(document, "resourceSpans", f"document {d}")):
            if not isinstance(resource, dict):
                raise ImportFormatError.at(f"resourceSpans[{r}]", "must be an object")
            scopes = resource.get("scopeSpans") or resource.get("instrumentationLibrarySpans") or []
            if not isinstance(scopes, list):
                raise ImportFormatError.at(f"resourceSpans[{r}].scopeSpans", "must be a list")
            for s, scope in enumerate(scopes):
                for i, raw in enumerate(_list(scope, "spans", f"resourceSpans[{r}].scopeSpans[{s}]")):
                    where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                    try:
                        spans.append(_span(raw, where))
                    except MALFORMED as exc:  # a malformed value inside (1e400 as a time, a kvlist without keys)
                        name = raw.get("name") if isinstance(raw, dict) else None
                        label = where if name is None else f"{where} '{str(name)[:100]}'"
                        raise ImportFormatError.at(label, f"malformed span: {exc!s:.200}") from None
    return sorted(spans, key=lambda sp: (sp.start, sp.end))


def _list(node: Any, key: str, where: str) -> list:
    value = node.get(key, []) if isinstance(node, dict) else None
    if not isinstance(value, list):
        raise ImportFormatError.at(f"{where}.{key}", "must be a list")
    return value


def _span(raw: Any, where: str) -> Span:
    if not isinstance(raw, dict):
        raise ImportFormatError.at(where, "a span must be an object")
    name = str(raw.get("name", ""))
    label = f"{where} '{name}'"
    attrs = {}
    for a in raw.get("attributes") or []:
        if not isinstance(a, dict) or "key" not in a:
            raise ImportFormatError.at(f"{label}.attributes", "each attribute needs a key and a value")
        attrs[a["key"]] = any_value(a.get("value"), f"{label} attribute {a['key']}")
    return Span(
        trace_id=_hex_id(raw.get("traceId"), 16, f"{label}.traceId"),
        span_id=_hex_id(raw.get("spanId"), 8, f"{label}.spanId"),
        name=name,
        start=int(raw.get("startTimeUnixNano") or 0),
        end=int(raw.get("endTimeUnixNano") or 0),
        attrs=attrs,
    )


def _hex_id(value: Any, size: int, where: str) -> str:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping writes bytes as base64. Both become hex."""
    if not isinstance(value, str) or not value:
        raise ImportFormatError.at(where, "missing id")
    if re.fullmatch(rf"[0-9a-fA-F]{{{2 * size}}}", value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise ImportFormatError.at(where, f"not a {size}-byte id in hex or base64: {value[:40]!r}")
    return raw.hex()


def any_value(value: Any, where: str) -> Any:
    """An OTLP AnyValue as plain JSON."""
    if not isinstance(value, dict):
        raise ImportFormatError.at(where, 'an attribute value must be an object such as {"stringValue": ...}')
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [any_value(v, where) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: any_value(kv.get("value"), where) for kv in (value["kvlistValue"] or {}).get("values", [])}
    if "bytesValue" in value:
        return value["bytesValue"]
    return None  # an empty AnyValue


# -- OpenInference's flattened lists -----------------------------------------------------------------------------


def indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.0.a``, ``prefix.0.b``, ``prefix.1.a`` ... as [{a, b}, {a}] in index order; an index missing below
    the largest is an empty item, so that the caller names what it lacks."""
    items: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if key.startswith(prefix + "."):
            match = _INDEXED.match(key[len(prefix) + 1 :])
            if match:
                index = int(match["n"])
                if index >= MAX_INDEX:
                    raise ValueError(f"{prefix}.{index}: more than {MAX_INDEX} items in one span")
                items.setdefault(index, {})[match["rest"]] = value
    return [items.get(i, {}) for i in range(max(items) + 1)] if items else []


def _json(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, over-long integers, deep nesting
        raise ImportFormatError.at(where, "is not valid JSON") from None


def messages_of(span: Span, direction: str) -> list[dict[str, Any]]:
    """The span's input or output messages (``direction``: "input" | "output") as OpenAI-style messages."""
    flat = indexed(span.attrs, f"llm.{direction}_messages")
    if flat:
        return [_openinference_message(m, span, f"llm.{direction}_messages.{i}") for i, m in enumerate(flat)]
    key = f"gen_ai.{direction}.messages"
    if key in span.attrs:
        parsed = _json(span.attrs[key], span.where(key))
        if not isinstance(parsed, list):
            raise ImportFormatError.at(span.where(key), "must be a JSON list of messages")
        return [_genai_message(m, span, f"{key}[{i}]") for i, m in enumerate(parsed)]
    legacy = indexed(span.attrs, "gen_ai.prompt" if direction == "input" else "gen_ai.completion")
    return [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in legacy]


def _openinference_message(m: dict[str, Any], span: Span, where: str) -> dict[str, Any]:
    role = m.get("message.role")
    if role is None:
        raise ImportFormatError.at(span.where(f"{where}.message.role"), "missing")
    content = m.get("message.content")
    if content is None:
        parts = indexed(m, "message.contents")
        content = "".join(str(p.get("message_content.text", "")) for p in parts)
    out: dict[str, Any] = {
        "role": "user" if role == "human" else "assistant" if role == "ai" else role,
        "content": content,
    }
    calls = indexed(m, "message.tool_calls")
    if calls:
        out["tool_calls"] = [
            {
                "id": c.get("tool_call.id") or f"call_{i}",
                "type": "function",
                "function": {
                    "name": c.get("tool_call.function.name", ""),
                    "arguments": c.get("tool_call.function.arguments", "{}"),
                },
            }
            for i, c in enumerate(calls)
        ]
    if "message.tool_call_id" in m:
        out["tool_call_id"] = m["message.tool_call_id"]
    if "message.name" in m:
        out["name"] = m["message.name"]
    return out


def _genai_message(m: Any, span: Span, where: str) -> dict[str, Any]:
    if not isinstance(m, dict) or "role" not in m:
        raise ImportFormatError.at(span.where(where), "a message needs a role")
    text, calls, result = [], [], None
    for part in m.get("parts") or []:
        kind = part.get("type")
        if kind == "text":
            text.append(str(part.get("content", "")))
        elif kind == "tool_call":
            args = part.get("arguments", {})
            calls.append(
                {
                    "id": part.get("id") or f"call_{len(calls)}",
                    "type": "function",
                    "function": {"name": part.get("name", ""), "arguments": args},
                }
            )
        elif kind == "tool_call_response":
            result = part
    out: dict[str, Any] = {"role": m["role"], "content": "".join(text) if text else m.get("content")}
    if calls:
        out["tool_calls"] = calls
    if result is not None:
        response = result.get("response")
        out.update(
            role="tool",
            tool_call_id=result.get("id"),
            content=response if isinstance(response, str) else json.dumps(response),
        )
    return out
