"""One trace's spans (``otlp.read_spans``) as an audit request: ``agent`` when tools were called, else ``rag``."""

from __future__ import annotations

import json
from typing import Any

from faithaudit.api_schemas.request import DEFAULT_TEMPLATE
from faithaudit.importers.errors import ImportFormatError
from faithaudit.importers.otlp import MALFORMED, Span, indexed, messages_of, read_spans

MODEL_KEYS = ("llm.model_name", "gen_ai.response.model", "gen_ai.request.model")


def otlp_request(data: Any, *, trace_id: str | None = None, source: str = "otlp") -> dict[str, Any]:
    """The audit request (plain JSON, validated by the caller) for one trace of an OTLP/JSON document."""
    spans = pick_trace(read_spans(data), trace_id)
    try:
        return _request(spans, source)
    except MALFORMED as exc:  # attributes of an unexpected shape
        raise ImportFormatError.at(f"trace {spans[0].trace_id}", f"malformed attributes: {exc!s:.200}") from None


def _request(spans: list[Span], source: str) -> dict[str, Any]:
    llms = [s for s in spans if s.kind == "LLM"]
    if not llms:
        raise ImportFormatError.at(
            f"trace {spans[0].trace_id}",
            "has no LLM span (openinference.span.kind LLM or gen_ai.operation.name chat): there is no answer to audit",
        )
    last = max(llms, key=lambda s: (s.end, s.start))
    notes = (
        [] if len(llms) == 1 else [f"{len(llms)} LLM calls in the trace: the last answer ({last.where()}) is audited"]
    )
    response = _answer(last)
    messages = messages_of(last, "input")
    tools = [s for s in spans if s.kind == "TOOL"]
    agentic = tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
    body = _agent(last, messages, tools) if agentic else _rag(spans, last, messages, notes)
    body["response"] = response
    model = next((last.attrs[k] for k in MODEL_KEYS if last.attrs.get(k)), None)
    if model:
        body["model"] = {"production_model": str(model)[:200]}
    ids = {"source_system": source, "trace_id": last.trace_id, "span_id": last.span_id, "notes": notes}
    body["metadata"] = ids | body.get("metadata", {})
    body["tags"] = [f"source:{source}"]
    return body


def pick_trace(spans: list[Span], trace_id: str | None) -> list[Span]:
    ids = list(dict.fromkeys(s.trace_id for s in spans))
    if not ids:
        raise ImportFormatError.at("resourceSpans", "no spans in the file")
    if trace_id is None:
        if len(ids) > 1:
            raise ImportFormatError.at("trace", f"the file holds {len(ids)} traces; choose one: {', '.join(ids)}")
        return spans
    wanted = trace_id.lower()
    if wanted not in ids:
        raise ImportFormatError.at("trace", f"{trace_id} is not in the file; it holds {', '.join(ids)}")
    return [s for s in spans if s.trace_id == wanted]


def _answer(span: Span) -> str:
    out = messages_of(span, "output")
    text = next((m.get("content") for m in reversed(out) if m.get("content")), None)
    if text is None:
        text = span.attrs.get("output.value") if span.attrs.get("output.mime_type") != "application/json" else None
    if not text or not str(text).strip():
        raise ImportFormatError.at(span.where("llm.output_messages"), "the last LLM call has no text answer")
    return str(text)


# -- rag -------------------------------------------------------------------------------------------------------


def _rag(spans: list[Span], last: Span, messages: list[dict], notes: list[str]) -> dict[str, Any]:
    retrievers = [s for s in spans if s.kind == "RETRIEVER" and s.start <= last.start]
    if not retrievers:
        raise ImportFormatError.at(
            f"trace {last.trace_id}",
            "has neither RETRIEVER nor TOOL spans before the last LLM call: no sources to audit",
        )
    documents, seen, positions = [], set(), {}
    for span in retrievers:
        for i, doc in enumerate(indexed(span.attrs, "retrieval.documents")):
            content = doc.get("document.content")
            if not isinstance(content, str) or not content.strip():
                raise ImportFormatError.at(span.where(f"retrieval.documents.{i}.document.content"), "missing or empty")
            if any(d["text"] == content for d in documents):
                continue  # a nested retriever's documents are also its parent's
            doc_id = str(doc.get("document.id") or f"d{len(documents) + 1}")
            while doc_id in seen:
                doc_id += "'"
            seen.add(doc_id)
            documents.append({"id": doc_id, "text": content, "metadata": _doc_metadata(doc, span)})
            positions[doc_id] = [span.span_id, i]
    documents = _seen_by_model(documents, messages, notes)
    query = _query(retrievers[-1], messages)
    prompt = _prompt(messages, [d["text"] for d in documents], query, notes)
    body = {"query": query, "pipeline": {"kind": "rag", "documents": documents}, "prompt": prompt}
    return body | {"metadata": {"document_spans": positions}}


def _seen_by_model(documents: list[dict], messages: list[dict], notes: list[str]) -> list[dict]:
    """Only the documents the last LLM call saw (a reranker may drop some): those whose text is in its messages,
    when any is; the dropped ones are named in a note."""
    seen_text = "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    kept = [d for d in documents if d["text"] in seen_text]
    if not kept or len(kept) == len(documents):
        return documents
    dropped = [d["id"] for d in documents if d not in kept]
    notes.append(
        f"retrieved but not in the LLM's messages (dropped by a later step), so not audited: {', '.join(dropped)}"
    )
    return kept


def _doc_metadata(doc: dict[str, Any], span: Span) -> dict[str, Any]:
    meta = doc.get("document.metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"raw": meta}
    out = dict(meta) if isinstance(meta, dict) else {}
    if doc.get("document.score") is not None:
        out["score"] = doc["document.score"]
    out["retriever_span"] = span.span_id
    return out


def _query(retriever: Span, messages: list[dict]) -> str:
    value = retriever.attrs.get("input.value")
    if isinstance(value, str) and retriever.attrs.get("input.mime_type") == "application/json":
        try:
            parsed = json.loads(value)
            value = parsed.get("query") or parsed.get("input") if isinstance(parsed, dict) else value
        except json.JSONDecodeError:
            pass
    if isinstance(value, str) and value.strip():
        return value
    users = [m["content"] for m in messages if m["role"] == "user" and isinstance(m.get("content"), str)]
    if not users:
        raise ImportFormatError.at(retriever.where("input.value"), "no query: the retriever's input is empty")
    return users[-1]


def _prompt(messages: list[dict], texts: list[str], query: str, notes: list[str]) -> dict[str, Any]:
    """The production prompt, rebuilt from the last user message the model saw: the documents' run becomes
    ``{context}`` and the query ``{query}``. Falls back to the default template, and says so."""
    system = next((m["content"] for m in messages if m["role"] == "system" and isinstance(m.get("content"), str)), None)
    user = next(
        (m["content"] for m in reversed(messages) if m["role"] == "user" and isinstance(m.get("content"), str)), None
    )
    spec: dict[str, Any] = {"system": system} if system else {}
    rebuilt = rebuild_template(user, texts, query) if user else None
    if rebuilt is None:
        notes.append(
            "the production prompt could not be rebuilt from the LLM's messages (the documents or the "
            "query are not in the last user message verbatim): the default template is used"
        )
        return spec | {"template": DEFAULT_TEMPLATE}
    template, separator = rebuilt
    notes.append("prompt.template rebuilt from the last user message the production model saw")
    return spec | {"template": template, "document_separator": separator}


def rebuild_template(user: str, texts: list[str], query: str) -> tuple[str, str] | None:
    if not texts:
        return None
    positions, cursor = [], 0
    for text in texts:
        at = user.find(text, cursor)
        if at < 0:
            return None
        positions.append((at, at + len(text)))
        cursor = at + len(text)
    gaps = {user[positions[i][1] : positions[i + 1][0]] for i in range(len(positions) - 1)}
    if len(gaps) > 1:
        return None
    separator = gaps.pop() if gaps else "\n\n"
    start, end = positions[0][0], positions[-1][1]
    head, tail = user[:start], user[end:]
    if head.count(query) + tail.count(query) != 1:
        return None
    head, tail = head.replace(query, "{query}"), tail.replace(query, "{query}")
    template = head + "{context}" + tail
    if template.count("{context}") != 1 or template.count("{query}") != 1:
        return None
    return template, separator


# -- agent -----------------------------------------------------------------------------------------------------


def _agent(last: Span, messages: list[dict], tool_spans: list[Span]) -> dict[str, Any]:
    if not any(m["role"] == "tool" for m in messages):
        messages = messages + _tool_turns(tool_spans)
    users = [m["content"] for m in messages if m["role"] == "user" and isinstance(m.get("content"), str)]
    if not users:
        raise ImportFormatError.at(last.where("llm.input_messages"), "no user message: the query is unknown")
    pipeline: dict[str, Any] = {"kind": "agent", "messages": messages}
    tools = _tool_schemas(last) or _tools_from_spans(tool_spans)
    if tools:
        pipeline["tools"] = tools
    return {"query": users[-1], "pipeline": pipeline}  # the question the final answer answers


def _tool_turns(tool_spans: list[Span]) -> list[dict]:
    """TOOL spans as an assistant call and its result, where the LLM's messages did not carry them."""
    turns = []
    for span in tool_spans:
        name = span.attrs.get("tool.name") or span.attrs.get("gen_ai.tool.name") or span.name
        args = (
            span.attrs.get("tool.parameters")
            or span.attrs.get("gen_ai.tool.call.arguments")
            or span.attrs.get("input.value")
            or "{}"
        )
        output = span.attrs.get("output.value", span.attrs.get("gen_ai.tool.call.result"))
        if output is None:
            raise ImportFormatError.at(span.where("output.value"), "a TOOL span needs its output")
        call_id = str(span.attrs.get("gen_ai.tool.call.id") or f"call_{span.span_id}")
        call = {"id": call_id, "type": "function", "function": {"name": str(name), "arguments": args}}
        turns += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call_id, "content": str(output), "name": str(name)},
        ]
    return turns


def _tools_from_spans(tool_spans: list[Span]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for span in tool_spans:
        name = span.attrs.get("tool.name") or span.attrs.get("gen_ai.tool.name")
        if not name or name in out:
            continue
        params = span.attrs.get("tool.parameters")
        try:
            params = json.loads(params) if isinstance(params, str) else params
        except json.JSONDecodeError:
            params = None
        spec = {"name": str(name), "description": str(span.attrs.get("tool.description", ""))}
        out[name] = spec | ({"parameters": params} if isinstance(params, dict) else {})
    return list(out.values())


def _tool_schemas(span: Span) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(indexed(span.attrs, "llm.tools")):
        schema = tool.get("tool.json_schema")
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError:
                raise ImportFormatError.at(span.where(f"llm.tools.{i}.tool.json_schema"), "is not JSON") from None
        function = (schema or {}).get("function", schema) if isinstance(schema, dict) else None
        if isinstance(function, dict) and function.get("name"):
            out.append(
                {
                    "name": function["name"],
                    "description": function.get("description", ""),
                    "parameters": function.get("parameters"),
                }
            )
    return out
