"""The LangChain handler, agent-aware: a real tool-calling loop (a scripted chat model) becomes an agent request
whose tool outputs are the sources, audited on the real model; an LCEL RAG chain keeps its real prompt; sampling
and the should_audit hook choose which runs are audited."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.tools import tool

from faithaudit.api_schemas import AuditRequest
from faithaudit.integrations.langchain import FaithauditCallbackHandler


@tool
def lookup(city: str) -> str:
    """Look up facts about a city."""
    return "Tarsquin is the capital of the island nation of Vellmora." if city == "Tarsquin" else "no entry"


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"It is raining in {city}."


class Atlas(BaseRetriever):
    def _get_relevant_documents(self, query, *, run_manager=None):
        return [Document(page_content="Vellmora's capital is Tarsquin, a harbour town.", id="atlas-1"),
                Document(page_content="The Eiffel Tower is in Paris.", id="atlas-2")]  # fmt: skip


def agent_loop(retrieve_first: bool = False):
    calls = [{"name": "lookup", "args": {"city": "Tarsquin"}, "id": "call_1"},
             {"name": "weather", "args": {"city": "Tarsquin"}, "id": "call_2"}]  # fmt: skip
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="", tool_calls=calls), AIMessage(content="Tarsquin is Vellmora's capital.")])
    )
    tools = {"lookup": lookup, "weather": weather}

    def loop(question: str) -> str:
        context = "\n".join(d.page_content for d in Atlas().invoke(question)) if retrieve_first else ""
        messages = [SystemMessage("Use the tools. " + context), HumanMessage(question)]
        reply = model.invoke(messages)
        messages.append(reply)
        for c in reply.tool_calls:
            messages.append(ToolMessage(tools[c["name"]].invoke(c["args"]), tool_call_id=c["id"], name=c["name"]))
        return model.invoke(messages).content

    return RunnableLambda(loop)


def _capture(**kwargs) -> tuple[FaithauditCallbackHandler, list[dict]]:
    sent: list[dict] = []
    handler = FaithauditCallbackHandler(submit=lambda body: sent.append(body) or "a" * 32, **kwargs)
    return handler, sent


def test_a_tool_calling_loop_becomes_an_agent_request_and_is_audited(model):
    from faithaudit.audits.run import audit_request

    handler, sent = _capture()
    answer = agent_loop().invoke("What is Tarsquin?", config={"callbacks": [handler]})
    handler.flush()
    (body,) = sent
    request = AuditRequest.model_validate(body)
    assert request.pipeline.kind == "agent" and request.response == answer
    steps = request.pipeline.trace(query=request.query).steps
    assert [(s.tool, s.arguments) for s in steps] == [
        ("lookup", {"city": "Tarsquin"}),
        ("weather", {"city": "Tarsquin"}),
    ]
    assert {t.name: t.description for t in request.pipeline.tools} == {
        "lookup": "Look up facts about a city.", "weather": "The weather in a city."}  # fmt: skip
    assert request.metadata["source_system"] == "langchain" and request.tags == ["source:langchain"]

    body["audit"] = {"methods": ["leave_one_out", "tool_unavailable"], "placebos": 0, "orders": 1,
                     "answer_flip_top_k": 0}  # fmt: skip
    report = audit_request(AuditRequest.model_validate(body), model)
    by_tool = {s.tool: s for s in report.sources}
    assert by_tool["lookup"].reliance > by_tool["weather"].reliance  # the answer comes from lookup's output
    assert by_tool["lookup"].reliance_unavailable is not None  # a tool intervention ran


def test_retrieval_outside_the_tools_stays_context_with_a_note():
    handler, sent = _capture()
    agent_loop(retrieve_first=True).invoke("What is Tarsquin?", config={"callbacks": [handler]})
    handler.flush()
    (body,) = sent
    assert body["pipeline"]["kind"] == "agent"
    assert "not audited as sources" in body["metadata"]["notes"][0]
    assert "Vellmora's capital is Tarsquin" in body["pipeline"]["messages"][0]["content"]


def test_an_lcel_rag_chain_keeps_its_real_prompt():
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context only."), ("human", "Context:\n{context}\n\nQuestion: {question}")]
    )
    joined = RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs))
    chain = (
        {"context": Atlas() | joined, "question": RunnablePassthrough()}
        | prompt
        | FakeListChatModel(responses=["Tarsquin."])
        | StrOutputParser()
    )  # fmt: skip
    handler, sent = _capture()
    chain.invoke("What is the capital of Vellmora?", config={"callbacks": [handler]})
    handler.flush()
    (body,) = sent
    request = AuditRequest.model_validate(body)
    assert request.pipeline.kind == "rag" and [d.id for d in request.pipeline.documents] == ["atlas-1", "atlas-2"]
    assert request.prompt.system == "Answer from the context only."
    assert request.prompt.template == "Context:\n{context}\n\nQuestion: {query}"


def test_request_defaults_merge_metadata_and_tags_and_override_the_prompt():
    defaults = {"metadata": {"team": "search"}, "tags": ["prod"], "prompt": {"template": "Q: {query}\n{context}"}}
    handler, sent = _capture(request_defaults=defaults)
    agent_loop().invoke("What is Tarsquin?", config={"callbacks": [handler]})
    handler.flush()
    (body,) = sent
    assert body["metadata"]["team"] == "search" and body["metadata"]["source_system"] == "langchain"
    assert body["tags"] == ["source:langchain", "prod"] and body["prompt"] == defaults["prompt"]


def test_sampling_and_the_hook_choose_the_runs():
    echo = RunnableLambda(lambda q: weather.invoke({"city": q}))
    handler, sent = _capture(sample_rate=0.3, seed=7)
    for i in range(40):
        echo.invoke(f"City{i}", config={"callbacks": [handler]})
    handler.flush()
    assert 4 <= len(sent) <= 20 and handler.skipped == 40 - len(sent)
    again, sent_again = _capture(sample_rate=0.3, seed=7)
    for i in range(40):
        echo.invoke(f"City{i}", config={"callbacks": [again]})
    again.flush()
    assert [b["query"] for b in sent_again] == [b["query"] for b in sent]  # seeded: the same runs

    hooked, chosen = _capture(should_audit=lambda run: run.inputs.get("input", "").endswith("7"))
    for i in range(20):
        echo.invoke(f"City{i}", config={"callbacks": [hooked]})
    hooked.flush()
    assert sorted(b["query"] for b in chosen) == ["City17", "City7"]
    with pytest.raises(ValueError, match="sample_rate"):
        FaithauditCallbackHandler(submit=lambda b: "x", sample_rate=1.5)
