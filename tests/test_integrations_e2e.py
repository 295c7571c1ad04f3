"""Against a running service (uvicorn API + a real Celery worker): corpus jobs, retriever audits over HTTP, the
Python client (sync and async), the LangChain handler on a real LCEL chain, and the gate run on the server."""

from __future__ import annotations

import asyncio
import json
import time
from xml.etree import ElementTree as ET

import pytest
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, load_example
from service_harness import create_key, service_env, start_api, start_worker
from typer.testing import CliRunner

from faithaudit.client import ApiError, AsyncClient, Client

LEAN = {"methods": ["leave_one_out", "no_context"], "answer_flip_top_k": 0, "placebos": 0, "orders": 1}
CORPUS_DOCS = [{"id": i, "text": t, "metadata": {"source": f"kb/{i}.md"}} for i, t in [*FILLER_DOCS, FICTIONAL_DOC]]
RETRIEVER_CASE = {
    "query": FICTIONAL_QUERY,
    "response": FICTIONAL_RESPONSE,
    "pipeline": {"kind": "retriever", "corpus": "kb", "k": 3},
    "audit": LEAN,
}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("svc")
    env = service_env(tmp, database_url=f"sqlite:///{tmp / 'fa.db'}", broker_url="redis://127.0.0.1:6379/0")
    key = create_key(env, "acme")
    api, base = start_api(env, tmp / "api.log")
    worker = start_worker(env, tmp / "worker.log")
    try:
        with Client(base, key, poll_interval=0.3) as client:
            job = client.wait_job(client.create_corpus("kb", CORPUS_DOCS).id, timeout=300)
            assert job.status == "succeeded", (job.error, worker.tail())
            yield base, key, client, worker
    finally:
        worker.stop()
        api.stop()


def test_corpus_jobs_and_bad_input(service):
    base, key, client, _ = service
    assert client.corpus("kb").model_dump(include={"status", "num_documents"}) == {
        "status": "ready",
        "num_documents": 10,
    }
    with pytest.raises(ApiError) as exc:
        client.add_documents("nope", [{"text": "x"}])
    assert exc.value.status == 404
    with pytest.raises(ApiError) as exc:
        client.create_corpus("kb", [{"text": "x"}])
    assert exc.value.status == 409
    for pipeline, path in [
        ({"kind": "retriever", "corpus": "nope", "k": 3}, "pipeline.corpus"),
        ({"kind": "retriever", "corpus": "kb", "k": 51}, "pipeline.k"),  # over the schema's limit
        ({"kind": "retriever", "corpus": "kb", "k": 11}, "pipeline.k"),  # more than the corpus holds
        ({"kind": "retriever", "corpus": "../etc", "k": 3}, "pipeline.corpus"),
    ]:
        with pytest.raises(ApiError) as exc:
            client.submit(RETRIEVER_CASE | {"pipeline": pipeline})
        assert exc.value.status == 422 and exc.value.api_fields[0]["path"] == path, exc.value.api_fields
    added = client.wait_job(
        client.add_documents("kb", [{"id": "extra", "text": "Owls hunt at night."}]).id, timeout=120
    )
    assert added.status == "succeeded" and added.result["num_documents"] == 11


def test_a_corpus_is_deleted_with_its_files_and_its_name_is_free_again(service):
    _, _, client, worker = service
    assert client.wait_job(client.create_corpus("scratch", [{"text": "Owls hunt at night."}]).id, 120).status == (
        "succeeded"
    )
    deleting = client.delete_corpus("scratch")
    assert deleting.kind == "corpus_delete"
    with pytest.raises(ApiError) as exc:
        client.corpus("scratch")
    assert exc.value.status == 404  # gone from the API at once
    removed = client.wait_job(deleting.id, timeout=120)
    assert removed.status == "succeeded" and removed.result == {"corpus": "scratch", "files_removed": True}
    rebuilt = client.wait_job(client.create_corpus("scratch", [{"text": "Bats hunt at dusk."}]).id, timeout=120)
    assert rebuilt.status == "succeeded" and rebuilt.result["num_documents"] == 1, (rebuilt.error, worker.tail())
    usage = client.usage()
    assert usage.limits.max_active_audits is None and usage.active_gates == 0


def test_client_submits_waits_and_reads_a_retriever_report(service):
    base, key, client, worker = service
    accepted = client.submit(RETRIEVER_CASE)
    status = client.wait(accepted.id, timeout=300)
    assert status.status == "succeeded", (status.error, worker.tail())
    report = client.report(accepted.id)
    assert report.retrieval.documents[0].id == "key" and [s.id for s in report.sources][0] == "key"
    assert report.retrieval_sensitivity.replacements
    assert accepted.id in [a.id for a in client.list(status="succeeded").items]

    async def read() -> str:
        async with AsyncClient(base, key) as aclient:
            return (await aclient.get(accepted.id)).status

    assert asyncio.run(read()) == "succeeded"


def test_langchain_handler_on_an_lcel_chain(service, model):
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    from faithaudit.integrations.langchain import AUDIT_ID_KEY, FaithauditCallbackHandler
    from faithaudit.retrieval.corpus import _faiss
    from faithaudit.retrieval.embeddings import get_embeddings

    base, key, client, worker = service
    docs = [Document(page_content=d["text"], metadata=d["metadata"], id=d["id"]) for d in CORPUS_DOCS]
    retriever = _faiss().from_documents(docs, get_embeddings()).as_retriever(search_kwargs={"k": 3})
    seen: list[list[Document]] = []

    def format_docs(found: list[Document]) -> str:
        seen.append(found)
        return "\n\n".join(d.page_content for d in found)

    def local_llm(prompt_value) -> str:  # the default local model behind a LangChain runnable
        prompt = model.chat_prompt(system=None, user=prompt_value.to_messages()[-1].content)
        return model.decode(model.generate(model.encode(prompt), max_new_tokens=16)).strip()

    chain = (
        {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | ChatPromptTemplate.from_template("Context: {context}\n\nQuery: {question}")
        | RunnableLambda(local_llm)
        | StrOutputParser()
    )
    handler = FaithauditCallbackHandler(client, request_defaults={"audit": LEAN})
    answer = chain.invoke(FICTIONAL_QUERY, config={"callbacks": [handler]})
    audit_id = handler.audit_id  # the submit answered; the audit itself has not run yet
    assert client.get(audit_id).status in ("queued", "running")
    assert handler.runs[-1].metadata[AUDIT_ID_KEY] == audit_id and not handler.errors

    done = client.wait(audit_id, timeout=300)
    assert done.status == "succeeded", (done.error, worker.tail())
    report = done.report
    (retrieved,) = seen
    assert [s.id for s in report.sources] == [d.id for d in retrieved]
    assert [s.text for s in report.sources] == [d.page_content for d in retrieved]
    assert report.response == answer.strip() and report.query == FICTIONAL_QUERY
    sent = handler.build_request(handler.runs[-1])["pipeline"]["documents"]  # what was submitted
    assert [d["metadata"] for d in sent] == [d.metadata for d in retrieved]  # LangChain metadata kept
    handler.close()


def test_gate_runs_on_the_server(service, tmp_path):
    from faithaudit.cli import app

    base, key, client, _ = service
    grounded = load_example("fictional_fact.json") | {"audit": LEAN, "thresholds": {"min_context_reliance": 1.0}}
    (tmp_path / "grounded.json").write_text(json.dumps(grounded))
    suite = {
        "name": "server",
        "thresholds": {"min_faithfulness_score": 0.0},
        "cases": [
            "grounded.json",
            {"name": "retrieved", "request": RETRIEVER_CASE, "thresholds": {"min_context_reliance": 1000}},
        ],
    }
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    junit = tmp_path / "junit.xml"
    t0 = time.monotonic()
    result = CliRunner().invoke(
        app, ["gate", str(tmp_path / "suite.json"), "--server", base, "--api-key", key, "--junit", str(junit)]
    )
    assert result.exit_code == 1, result.output
    assert time.monotonic() - t0 < 300
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert len(failures) == 1 and failures[0].get("message").startswith("min_context_reliance: limit 1000")

    with pytest.raises(ApiError) as exc:  # a path cannot be read by the server
        client.submit_gate({"thresholds": {"min_context_reliance": 1}, "cases": ["grounded.json"]})
    assert exc.value.status == 422 and exc.value.api_fields[0]["path"] == "cases[0].path"
    result = CliRunner().invoke(app, ["gate", str(tmp_path / "suite.json"), "--server", base, "--api-key", "bad"])
    assert result.exit_code == 2, result.output
