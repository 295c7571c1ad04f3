"""A LangChain callback handler that audits every run of a chain on a faithaudit service, without blocking it.

    from faithaudit.client import Client
    from faithaudit.integrations.langchain import FaithauditCallbackHandler

    handler = FaithauditCallbackHandler(Client("http://127.0.0.1:8000", api_key=KEY),
                                        request_defaults={"thresholds": {"min_context_reliance": 1.0}})
    answer = chain.invoke("What is the capital of Vellmora?", config={"callbacks": [handler]})
    handler.audit_id            # the audit of the last finished run (waits briefly for the submit to answer)
    handler.runs[-1].metadata["faithaudit_audit_id"]   # the same id, in the run's metadata

The handler is a LangChain tracer: it sees the whole run tree. When a root run ends it builds one audit request
and hands it to a background thread that submits it; ``invoke`` returns at once, the audit is queued.

- A chat model that called tools (an agent loop, ``bind_tools``): an ``agent`` request from the last chat call's
  messages (tool calls and results included), the tools' schemas, and the final answer; the tool outputs are the
  sources, so the tool interventions run. Documents retrieved outside the tool calls stay in the messages as
  context, and a note in ``metadata`` says they are not audited as sources.
- Otherwise a ``rag`` request: the query (the root's input), the retrieved ``Document``s (every retriever run, in
  order, metadata kept; with no retriever, the tool outputs), the answer (the root's output), and the production
  prompt rebuilt from the messages the chat model really saw when it can be.

``sample_rate`` (0 to 1, seeded) and ``should_audit(run) -> bool`` choose which production runs are audited.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from langchain_core.tracers.base import BaseTracer

log = logging.getLogger(__name__)

AUDIT_ID_KEY = "faithaudit_audit_id"
_QUERY_KEYS = ("question", "query", "input")
_ANSWER_KEYS = ("answer", "output", "text", "result")
_BAD_ID = re.compile(r"[\[\]:\s]+")


class FaithauditCallbackHandler(BaseTracer):
    """Audits each finished root run of the chains it is attached to. Never raises into the chain."""

    def __init__(
        self,
        client: Any = None,
        *,
        submit: Callable[[dict], str] | None = None,
        request_defaults: dict | None = None,
        sample_rate: float = 1.0,
        should_audit: Callable[[Any], bool] | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """``client``: a ``faithaudit.client.Client``; or ``submit(request_dict) -> audit_id``.

        ``request_defaults`` are merged into every audit request (``prompt`` mirroring the chain's prompt,
        ``model``, ``audit`` options, ``thresholds``). A finished root run is audited when ``should_audit(run)``
        (default: always) and a draw from a ``seed``-ed generator falls under ``sample_rate``.
        """
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")
        kwargs.setdefault("_schema_format", "original+chat")  # chat runs keep their messages, not a flat prompt
        super().__init__(**kwargs)
        self.sample_rate, self.should_audit = sample_rate, should_audit
        self._draws = random.Random(seed)
        self.skipped = 0  # root runs left out by the sampling or the hook
        if submit is None and client is None:
            raise ValueError("pass a faithaudit Client or a submit function")
        self._submit = submit or (lambda body: client.submit(body).id)
        self.request_defaults = dict(request_defaults or {})
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faithaudit-submit")
        self._lock = threading.Lock()
        self.runs: list[Any] = []  # finished root runs, oldest first
        self.futures: dict[str, Future] = {}  # root run id -> future of the audit id
        self.errors: list[str] = []

    # -- the tracer hook -----------------------------------------------------------------------------------------

    def _persist_run(self, run: Any) -> None:
        """Called by LangChain when a root run ends: build the request, submit it in the background."""
        if not self._chosen(run):
            return
        try:
            body = self.build_request(run)
        except Exception as exc:  # noqa: BLE001 - a run we cannot audit must not break the chain
            self._error(f"run {run.id}: not audited: {exc}")
            return
        if body is None:
            return
        with self._lock:
            self.runs.append(run)
            self.futures[str(run.id)] = self._executor.submit(self._send, run, body)

    def _chosen(self, run: Any) -> bool:
        try:
            wanted = self.should_audit is None or bool(self.should_audit(run))
        except Exception as exc:  # noqa: BLE001 - a faulty hook must not break the chain
            self._error(f"run {run.id}: should_audit raised {exc!r}; not audited")
            return False
        with self._lock:
            chosen = wanted and (self.sample_rate >= 1.0 or self._draws.random() < self.sample_rate)
            self.skipped += not chosen
        return chosen

    def _send(self, run: Any, body: dict) -> str | None:
        try:
            audit_id = self._submit(body)
        except Exception as exc:  # noqa: BLE001 - reported through .errors and the log
            self._error(f"run {run.id}: submit failed: {exc}")
            return None
        run.add_metadata({AUDIT_ID_KEY: audit_id})
        return audit_id

    def _error(self, message: str) -> None:
        log.warning("faithaudit: %s", message)
        with self._lock:
            self.errors.append(message)

    # -- what callers read ---------------------------------------------------------------------------------------

    def audit_id_for(self, run_id: Any, timeout: float | None = 30.0) -> str | None:
        """The audit id of a root run (waits up to ``timeout`` for its submit); None if it was not submitted."""
        future = self.futures.get(str(run_id))
        return None if future is None else future.result(timeout=timeout)

    @property
    def audit_id(self) -> str | None:
        """The audit id of the most recent finished root run."""
        with self._lock:
            last = self.runs[-1] if self.runs else None
        return None if last is None else self.audit_id_for(last.id)

    @property
    def audit_ids(self) -> list[str | None]:
        return [self.audit_id_for(r.id) for r in list(self.runs)]

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every pending submit has been answered."""
        for future in list(self.futures.values()):
            future.exception(timeout=timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- run tree -> audit request -------------------------------------------------------------------------------

    def build_request(self, run: Any) -> dict | None:
        """The audit request for a finished root run; None when it retrieved nothing and called no tool."""
        if run.error:
            return None
        runs = list(_walk(run))
        chats = [r for r in runs if r.run_type == "chat_model"]
        messages = _messages(chats[-1]) if chats else []
        agentic = any(m.get("tool_calls") for m in messages) or any(m["role"] == "tool" for m in messages)
        body = _agent_request(run, runs, chats[-1], messages) if agentic else _rag_request(run, runs, messages)
        if body is None:
            return None
        body["metadata"] = {
            "source_system": "langchain",
            "run_id": str(run.id),
            "trace_id": str(getattr(run, "trace_id", None) or run.id),
            **body.get("metadata", {}),
        }
        body["tags"] = ["source:langchain"]
        return merge_defaults(body, self.request_defaults)


def merge_defaults(body: dict, defaults: dict) -> dict:
    """``request_defaults`` over the built request: ``metadata`` merged (yours win), ``tags`` added, what the run
    itself gave (query, pipeline, response) kept, anything else (prompt, model, audit, thresholds) yours."""
    out = dict(body)
    for key, value in defaults.items():
        if key == "metadata":
            out["metadata"] = {**out.get("metadata", {}), **value}
        elif key == "tags":
            out["tags"] = list(dict.fromkeys([*out.get("tags", []), *value]))
        elif key not in ("query", "pipeline", "response"):
            out[key] = value
    return out


def _rag_request(run: Any, runs: list, messages: list[dict]) -> dict | None:
    retrieved = [d for r in runs if r.run_type == "retriever" for d in (r.outputs or {}).get("documents", [])]
    documents = _documents(retrieved) if retrieved else _tool_documents([r for r in runs if r.run_type == "tool"])
    if not documents:
        return None
    query = _query(run)
    if query is None:
        query = next((r.inputs.get("query") for r in runs if r.run_type == "retriever"), None)
    answer = _answer(run.outputs)
    if not query or not answer:
        raise ValueError("could not find the query or the final answer in the run")
    body = {"query": query, "pipeline": {"kind": "rag", "documents": documents}, "response": answer}
    if retrieved and messages:
        prompt = _production_prompt(messages, [d["text"] for d in documents], query)
        if prompt is not None:
            body["prompt"] = prompt
    return body


def _production_prompt(messages: list[dict], texts: list[str], query: str) -> dict | None:
    """The chat model's real prompt as a template: the documents' run is {context}, the query {query}."""
    from faithaudit.importers.trace_request import rebuild_template

    user = next((m["content"] for m in reversed(messages) if m["role"] == "user" and isinstance(m["content"], str)),
                None)  # fmt: skip
    rebuilt = rebuild_template(user, texts, query) if user else None
    if rebuilt is None:
        return None
    system = next((m["content"] for m in messages if m["role"] == "system" and isinstance(m["content"], str)), None)
    return {"template": rebuilt[0], "document_separator": rebuilt[1]} | ({"system": system} if system else {})


def _agent_request(run: Any, runs: list, chat: Any, messages: list[dict]) -> dict:
    answer = _answer(run.outputs) or _answer((chat.outputs or {}).get("generations", [[{}]])[0][0].get("text"))
    users = [m["content"] for m in messages if m["role"] == "user" and isinstance(m["content"], str)]
    if not users or not answer:
        raise ValueError("could not find the user's question or the final answer in the agent run")
    pipeline: dict[str, Any] = {"kind": "agent", "messages": messages}
    tools = _tool_specs(chat, [r for r in runs if r.run_type == "tool"])
    if tools:
        pipeline["tools"] = tools
    body: dict[str, Any] = {"query": users[-1], "pipeline": pipeline, "response": answer}  # the last question
    if any(r.run_type == "retriever" for r in runs if not _inside_tool(r, runs)):
        body["metadata"] = {
            "notes": [
                "documents retrieved outside the tool calls are in the messages as context, "
                "not audited as sources (audit the retrieval step on its own for them)"
            ]
        }
    return body


def _inside_tool(run: Any, runs: list) -> bool:
    by_id = {r.id: r for r in runs}
    parent = by_id.get(run.parent_run_id)
    while parent is not None:
        if parent.run_type == "tool":
            return True
        parent = by_id.get(parent.parent_run_id)
    return False


_ROLES = {"SystemMessage": "system", "HumanMessage": "user", "AIMessage": "assistant", "ToolMessage": "tool",
          "AIMessageChunk": "assistant", "ChatMessage": "user"}  # fmt: skip


def _messages(chat: Any) -> list[dict]:
    """A chat run's input messages (LangChain's serialized form) as OpenAI-style messages."""
    batches = (chat.inputs or {}).get("messages") or [[]]
    out = []
    for raw in batches[0]:
        kind = raw.get("id", ["", "HumanMessage"])[-1] if isinstance(raw, dict) else type(raw).__name__
        fields = raw.get("kwargs", {}) if isinstance(raw, dict) else raw.__dict__
        content = fields.get("content")
        if isinstance(content, list):  # content blocks: keep the text
            content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
        message: dict[str, Any] = {"role": _ROLES.get(kind, "user"), "content": content}
        calls = fields.get("tool_calls") or []
        if calls:
            message["tool_calls"] = [
                {"id": c.get("id") or f"call_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c.get("args", {}))}}
                for i, c in enumerate(calls)
            ]  # fmt: skip
        if fields.get("tool_call_id"):
            message["tool_call_id"] = fields["tool_call_id"]
        if message["role"] == "tool" and fields.get("name"):
            message["name"] = fields["name"]
        out.append(message)
    return out


def _tool_specs(chat: Any, tool_runs: list) -> list[dict]:
    """The tools' schemas: as bound to the chat model (OpenAI format), else the names and descriptions run."""
    bound = ((chat.extra or {}).get("invocation_params") or {}).get("tools") or []
    specs = {}
    for tool in bound:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            specs[function["name"]] = {"name": function["name"], "description": function.get("description", ""),
                                       "parameters": function.get("parameters")}  # fmt: skip
    for run in tool_runs:
        if run.name not in specs:
            description = (run.serialized or {}).get("description", "") if isinstance(run.serialized, dict) else ""
            specs[run.name] = {"name": run.name, "description": description or ""}
    return list(specs.values())


def _walk(run: Any):
    """Depth-first, in start order."""
    for child in sorted(run.child_runs or [], key=lambda r: (r.start_time, r.dotted_order or "")):
        yield child
        yield from _walk(child)


def _jsonable(metadata: dict) -> dict:
    return json.loads(json.dumps(metadata, default=str))


def _unique_id(raw: str | None, fallback: str, seen: set[str]) -> str:
    base = _BAD_ID.sub("_", raw).strip("_") if raw else ""
    base = (base or fallback)[:190]
    doc_id, n = base, 2
    while doc_id in seen:
        doc_id, n = f"{base}-{n}", n + 1
    seen.add(doc_id)
    return doc_id


def _documents(docs: list) -> list[dict]:
    """LangChain Documents -> request documents, in retrieval order; the same document retrieved twice counts once."""
    out: list[dict] = []
    seen_ids: set[str] = set()
    seen_texts: set[tuple[str | None, str]] = set()
    for i, doc in enumerate(docs, start=1):
        text = getattr(doc, "page_content", None)
        if text is None and isinstance(doc, dict):
            text = doc.get("page_content")
        if not text or not str(text).strip():
            continue
        raw_id = getattr(doc, "id", None) or (doc.get("id") if isinstance(doc, dict) else None)
        key = (raw_id, text)
        if key in seen_texts:
            continue
        seen_texts.add(key)
        metadata = getattr(doc, "metadata", None) or (doc.get("metadata") if isinstance(doc, dict) else None) or {}
        out.append({"id": _unique_id(raw_id, f"doc-{i}", seen_ids), "text": text, "metadata": _jsonable(metadata)})
    return out


def _tool_documents(runs: list) -> list[dict]:
    """Each tool call's output is a source; its name and input go to the metadata."""
    out: list[dict] = []
    seen: set[str] = set()
    for i, run in enumerate(runs, start=1):
        output = (run.outputs or {}).get("output")
        text = getattr(output, "content", output)
        if text is None or not str(text).strip():
            continue
        inputs = dict(run.inputs or {})
        tool_input = inputs["input"] if set(inputs) == {"input"} else inputs
        meta = {"tool": run.name, "tool_input": _jsonable({"v": tool_input})["v"]}
        out.append({"id": _unique_id(f"{run.name}-{i}", f"tool-{i}", seen), "text": str(text), "metadata": meta})
    return out


def _query(run: Any) -> str | None:
    inputs = run.inputs or {}
    for key in _QUERY_KEYS:
        value = inputs.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, dict):  # e.g. {"input": {"question": ...}}
            nested = next((value[k] for k in _QUERY_KEYS if isinstance(value.get(k), str)), None)
            if nested:
                return nested
    return next((v for v in inputs.values() if isinstance(v, str) and v.strip()), None)


def _answer(outputs: Any) -> str | None:
    if outputs is None:
        return None
    if isinstance(outputs, str):
        return outputs.strip() or None
    content = getattr(outputs, "content", None)
    if isinstance(content, str):
        return content.strip() or None
    if isinstance(outputs, dict):
        for key in _ANSWER_KEYS:
            if key in outputs:
                found = _answer(outputs[key])
                if found:
                    return found
    return None
