"""OTLP/JSON traces as audit requests: real OpenInference output of a LangChain RAG chain and a tool-calling loop,
hand-written OpenTelemetry GenAI and collector files for the edge cases, malformed files (the error names the span
and the attribute), over the CLI and over HTTP, and one trace imported and audited with the real model."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
from otel_traces import DOCS, QUESTION, agent_trace, rag_trace
from typer.testing import CliRunner

from faithaudit.api_schemas import AuditRequest
from faithaudit.cli import app
from faithaudit.errors import InvalidRequestError
from faithaudit.importers.trace_request import otlp_request
from faithaudit.importers.validate import checked_request

DATA = Path(__file__).parent / "data" / "otlp"


@pytest.fixture(scope="module")
def rag() -> dict:
    return rag_trace()


def _request(data, **kw) -> AuditRequest:
    body = otlp_request(data, **kw)
    return checked_request(body, where="test")


def test_langchain_rag_trace_becomes_a_rag_request_with_the_production_prompt(rag):
    request = _request(rag)
    assert request.pipeline.kind == "rag" and request.query == QUESTION
    assert [d.text for d in request.pipeline.documents] == [text for text, _ in DOCS]
    assert request.pipeline.documents[0].metadata["source"] == "atlas"
    assert request.response == "The capital of Vellmora is Tarsquin."
    assert request.prompt.system == "Answer from the context only."
    assert request.prompt.template == "Context:\n{context}\n\nQuestion: {query}"
    assert request.prompt.document_separator == "\n\n"
    meta = request.metadata
    assert meta["source_system"] == "otlp" and len(meta["trace_id"]) == 32 and len(meta["span_id"]) == 16
    assert "rebuilt" in meta["notes"][0] and request.tags == ["source:otlp"]


def test_langchain_tool_loop_becomes_an_agent_request():
    request = _request(agent_trace())
    assert request.pipeline.kind == "agent" and request.query == "What is Tarsquin?"
    trace = request.pipeline.trace(query=request.query)
    assert [(s.tool, s.arguments, s.output) for s in trace.steps] == [
        ("lookup", {"city": "Tarsquin"}, "Tarsquin is the capital of the island nation of Vellmora.")
    ]
    assert request.response == "Tarsquin is Vellmora's capital."
    assert "2 LLM calls in the trace: the last answer" in request.metadata["notes"][0]
    assert [t.name for t in request.pipeline.tools] == ["lookup"]


def test_genai_conventions_out_of_order_and_several_llm_calls():
    data = json.loads((DATA / "genai_agent_out_of_order.json").read_text())
    spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    random.Random(3).shuffle(spans)
    request = _request(data)
    assert request.pipeline.kind == "agent" and request.response == "Order A17 shipped on Monday."
    assert request.model.production_model == "gpt-4o-2024-08-06"
    steps = request.pipeline.trace(query=request.query).steps
    assert [(s.tool, s.output) for s in steps] == [("get_order", "Order A17 shipped on Monday by sea freight.")]
    assert request.metadata["span_id"] == "eee19b7ec3c1b174"  # the last LLM call by time, not by file order


def test_collector_json_lines_need_a_trace_id_and_rebuild_a_prefixed_prompt():
    lines = [json.loads(line) for line in (DATA / "two_traces.jsonl").read_text().splitlines()]
    with pytest.raises(InvalidRequestError, match="holds 2 traces; choose one"):
        otlp_request(lines)
    request = _request(lines, trace_id="0AF7651916CD43DD8448EB211C80319C")
    assert [d.id for d in request.pipeline.documents] == ["kb-7", "kb-9"]
    assert request.pipeline.documents[0].metadata["score"] == 0.82
    assert request.prompt.template == "Sources:\n[kb] {context}\nAnswer: {query}"
    assert request.prompt.document_separator == "\n[kb] "
    assert request.model.production_model == "gpt-4o-mini"
    with pytest.raises(InvalidRequestError, match="trace 1bf7.*no RETRIEVER nor TOOL|neither RETRIEVER nor TOOL"):
        otlp_request(lines, trace_id="1bf7651916cd43dd8448eb211c80319c")


def _mutate(rag: dict, name: str, fn) -> dict:
    data = copy.deepcopy(rag)
    span = next(s for s in data["resourceSpans"][0]["scopeSpans"][0]["spans"] if s["name"] == name)
    fn(span)
    return data


def _set(span: dict, key: str, value: dict) -> None:
    next(a for a in span["attributes"] if a["key"] == key)["value"] = value


def _drop(span: dict, prefix: str) -> None:
    span["attributes"] = [a for a in span["attributes"] if not a["key"].startswith(prefix)]


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("FakeListChatModel", lambda s: _drop(s, "llm.output_messages"), "attribute llm.output_messages: the last"),
        ("Atlas", lambda s: _set(s, "retrieval.documents.1.document.content", {"stringValue": " "}),
         "attribute retrieval.documents.1.document.content: missing or empty"),
        ("Atlas", lambda s: s.update(spanId="not-an-id"), "'Atlas'.spanId: not a 8-byte id"),
        ("FakeListChatModel", lambda s: s["attributes"].append({"key": "x"}),
         "'FakeListChatModel' attribute x: an attribute value must"),
        ("FakeListChatModel", lambda s: _drop(s, "llm.input_messages.0.message.role"),
         "attribute llm.input_messages.0.message.role: missing"),
        ("Atlas", lambda s: s["attributes"].append({"key": "retrieval.documents.999999.document.content",
                                                   "value": {"stringValue": "x"}}), "more than 10000 items"),
        ("Atlas", lambda s: s.update(startTimeUnixNano=float("inf")), "'Atlas': malformed span"),
        ("Atlas", lambda s: _set(s, "retrieval.documents.0.document.metadata", {"stringValue": "[" * 5000}),
         "malformed attributes"),
    ],
)  # fmt: skip
def test_malformed_traces_name_the_span_and_the_attribute(rag, name, change, expected):
    with pytest.raises(InvalidRequestError) as err:
        otlp_request(_mutate(rag, name, change))
    assert expected in err.value.message, err.value.message


def test_cli_import_and_its_errors(tmp_path, rag):
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(rag))
    out = tmp_path / "request.json"
    result = CliRunner().invoke(app, ["import", "otlp", str(trace), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert AuditRequest.model_validate_json(out.read_text()).pipeline.kind == "rag"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_mutate(rag, "Atlas", lambda s: _drop(s, "retrieval.documents.0"))))
    result = CliRunner().invoke(app, ["import", "otlp", str(bad)])
    assert result.exit_code == 2 and "retrieval.documents.0.document.content" in result.output.replace("\n", "")
    (tmp_path / "garbage.json").write_text("{not json")
    result = CliRunner().invoke(app, ["import", "otlp", str(tmp_path / "garbage.json")])
    assert result.exit_code == 2 and "not valid JSON" in " ".join(result.output.split())


def test_http_import_converts_and_refuses_with_the_span_named(tmp_path, rag):
    from inprocess import service_client

    with service_client(f"sqlite:///{tmp_path / 'fa.db'}", tmp_path, signing_secret="s" * 40) as (client, store):
        headers = {"X-API-Key": store.create_api_key("acme")[0]}
        ok = client.post("/v1/imports/otlp", json=rag, headers=headers)
        assert ok.status_code == 200, ok.text
        assert ok.json()["request"]["prompt"]["template"] == "Context:\n{context}\n\nQuestion: {query}"
        bad = client.post("/v1/imports/otlp", json=_mutate(rag, "FakeListChatModel", lambda s: s.update(traceId=7)),
                          headers=headers)  # fmt: skip
        assert bad.status_code == 422 and "'FakeListChatModel'.traceId" in bad.json()["error"]["message"]
        assert client.post("/v1/imports/otlp", json=rag).status_code == 401


def test_an_imported_trace_is_audited(rag, model):
    """The whole way: the LangChain trace, imported, audited on the local model as a proxy for its production one."""
    from faithaudit.audits.run import audit_request

    body = otlp_request(rag)
    body["audit"] = {"methods": ["leave_one_out", "no_context"], "placebos": 4, "orders": 2, "answer_flip_top_k": 0}
    report = audit_request(checked_request(body, where="test"), model)
    atlas, eiffel = report.sources
    assert atlas.reliance > eiffel.reliance and atlas.reliance > 2.0
    assert report.metadata["trace_id"] == body["metadata"]["trace_id"] and report.tags == ["source:otlp"]


def test_nested_retrievers_count_once_and_reranked_out_documents_are_dropped(rag):
    data = copy.deepcopy(rag)
    spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    atlas = next(s for s in spans if s["name"] == "Atlas")
    child = copy.deepcopy(atlas) | {"name": "Inner", "spanId": "AAAAAAAAAAE="}  # the same documents, one level down
    extra = {"key": "retrieval.documents.2.document.content", "value": {"stringValue": "Reranked away, never shown."}}
    atlas["attributes"].append(extra)
    spans.append(child)
    request = _request(data)
    assert [d.text for d in request.pipeline.documents] == [text for text, _ in DOCS]
    assert any("not in the LLM's messages" in n and "d3" in n for n in request.metadata["notes"])
