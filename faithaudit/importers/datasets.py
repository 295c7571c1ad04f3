"""Evaluation datasets teams already keep, as audit requests: RAGAS single-turn samples (``user_input``,
``retrieved_contexts``, ``response``; an ``EvaluationDataset`` saved as JSON Lines or JSON) and DeepEval test cases
(``input``, ``actual_output``, ``retrieval_context``, ``tools_called``). Each row becomes one request; its line or
index is kept in ``metadata`` and errors name it."""

from __future__ import annotations

import json
from typing import Any

from faithaudit.importers.errors import ImportFormatError

FORMATS = ("ragas", "deepeval")


def rows_of(data: Any, fmt: str) -> list[dict[str, Any]]:
    """A dataset's rows: a list, JSON Lines read as a list, or an object holding the list."""
    if isinstance(data, dict):
        for key in ("samples", "test_cases", "goldens", "data"):
            if isinstance(data.get(key), list):
                return data[key]
        return [data]  # one sample or test case
    if isinstance(data, list):
        return data
    raise ImportFormatError.at(fmt, "a dataset is a list of rows, JSON Lines, or an object with `samples`")


def dataset_requests(data: Any, fmt: str, *, name: str = "row") -> list[tuple[str, dict[str, Any]]]:
    """(case name, request body) per row; the body is validated by the caller."""
    if fmt not in FORMATS:
        raise ImportFormatError.at("format", f"must be one of {', '.join(FORMATS)}")
    convert = _ragas if fmt == "ragas" else _deepeval
    out = []
    for i, row in enumerate(rows_of(data, fmt)):
        where = f"{name}[{i}]"
        if not isinstance(row, dict):
            raise ImportFormatError.at(where, "a row must be an object")
        body = convert(row, where)
        body["metadata"] = {"source_system": fmt, "row": i, **body.get("metadata", {})}
        body["tags"] = [f"source:{fmt}"]
        out.append((where, body))
    return out


def _text(row: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ImportFormatError.at(f"{where}.{key}", "must be a non-empty string")
    return value


def _contexts(row: dict[str, Any], key: str, where: str, prefix: str) -> list[dict[str, Any]]:
    contexts = row.get(key) or []
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise ImportFormatError.at(f"{where}.{key}", "must be a list of strings")
    docs = [{"id": f"{prefix}{i + 1}", "text": c} for i, c in enumerate(contexts) if c.strip()]
    return docs


def _ragas(row: dict[str, Any], where: str) -> dict[str, Any]:
    if isinstance(row.get("user_input"), list):
        raise ImportFormatError.at(
            f"{where}.user_input",
            "a multi-turn sample (a list of messages) is not supported: convert its tool calls to an agent request",
        )
    query = _text(row, "user_input", where)
    docs = _contexts(row, "retrieved_contexts", where, "c")
    if not docs:
        raise ImportFormatError.at(f"{where}.retrieved_contexts", "no retrieved contexts: nothing to audit")
    return _body(query, {"kind": "rag", "documents": docs}, row, where, answer="response", expected="reference")


def _deepeval(row: dict[str, Any], where: str) -> dict[str, Any]:
    query = _text(row, "input", where)
    docs = _contexts(row, "retrieval_context", where, "r")
    tools = row.get("tools_called") or []
    if not isinstance(tools, list):
        raise ImportFormatError.at(f"{where}.tools_called", "must be a list of tool calls")
    steps = [_step(t, f"{where}.tools_called[{i}]", i) for i, t in enumerate(tools)]
    steps = [s for s in steps if s is not None]
    if steps:
        if docs:  # one audit: the retrieved context goes in as the output of a retrieval step before the tools
            text = "\n\n".join(d["text"] for d in docs)
            steps.insert(0, {"id": "retrieval", "tool": "retrieval", "arguments": {"query": query}, "output": text})
        pipeline: dict[str, Any] = {"kind": "agent", "steps": steps}
    elif docs:
        pipeline = {"kind": "rag", "documents": docs}
    else:
        raise ImportFormatError.at(where, "neither retrieval_context nor tools_called with outputs: nothing to audit")
    return _body(query, pipeline, row, where, answer="actual_output", expected="expected_output")


def _body(query: str, pipeline: dict, row: dict[str, Any], where: str, *, answer: str, expected: str) -> dict:
    """The request: the row's answer is the response to audit (else one is generated); the expected answer is
    kept in metadata for the reviewer."""
    body: dict[str, Any] = {"query": query, "pipeline": pipeline}
    response = _text(row, answer, where, required=False)
    if response is not None:
        body["response"] = response
    if isinstance(row.get(expected), str):
        body["metadata"] = {expected: row[expected][:2000]}
    return body


def _step(tool: Any, where: str, i: int) -> dict[str, Any] | None:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise ImportFormatError.at(where, "a tool call needs a name")
    output = tool.get("output")
    if output is None:
        return None  # DeepEval allows calls without outputs; there is nothing to ablate
    args = tool.get("input_parameters") or {}
    if not isinstance(args, dict):
        raise ImportFormatError.at(f"{where}.input_parameters", "must be an object")
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return {"id": f"t{i + 1}", "tool": tool["name"], "arguments": args, "output": text}
