"""Real OpenInference traces: a LangChain LCEL RAG chain and a tool-calling loop, instrumented with
openinference-instrumentation-langchain, exported with the OpenTelemetry SDK and encoded as OTLP/JSON (the
protobuf message's JSON mapping, as an OTLP/HTTP JSON body carries it). Scripted chat models answer, so no
network and no model are needed."""

from __future__ import annotations

from contextlib import contextmanager

QUESTION = "What is the capital of Vellmora?"
DOCS = [
    ("Vellmora is a small island nation. Its capital is Tarsquin, a harbour town.", {"source": "atlas"}),
    ("The Eiffel Tower is a wrought-iron tower in Paris.", {}),
]


@contextmanager
def instrumented():
    """A tracer provider with an in-memory exporter, and LangChain instrumented for the duration."""
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


def otlp_json(spans) -> dict:
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return MessageToDict(encode_spans(spans))


def rag_trace() -> dict:
    from langchain_core.documents import Document
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnablePassthrough

    class Atlas(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager=None):
            return [Document(page_content=text, metadata=meta) for text, meta in DOCS]

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context only."), ("human", "Context:\n{context}\n\nQuestion: {question}")]
    )
    model = FakeListChatModel(responses=["The capital of Vellmora is Tarsquin."])
    chain = (
        {
            "context": Atlas() | (lambda docs: "\n\n".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | model
        | StrOutputParser()
    )
    with instrumented() as exporter:
        chain.invoke(QUESTION)
        return otlp_json(exporter.get_finished_spans())


def agent_trace() -> dict:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool

    @tool
    def lookup(city: str) -> str:
        """Look up facts about a city."""
        return "Tarsquin is the capital of the island nation of Vellmora." if city == "Tarsquin" else "no entry"

    call = {"name": "lookup", "args": {"city": "Tarsquin"}, "id": "call_1"}
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="", tool_calls=[call]), AIMessage(content="Tarsquin is Vellmora's capital.")])
    )

    def loop(question: str) -> str:
        messages = [SystemMessage("Use the tools."), HumanMessage(question)]
        reply = model.invoke(messages)
        messages.append(reply)
        for c in reply.tool_calls:
            messages.append(ToolMessage(lookup.invoke(c["args"]), tool_call_id=c["id"], name=c["name"]))
        return model.invoke(messages).content

    with instrumented() as exporter:
        RunnableLambda(loop).invoke("What is Tarsquin?")
        return otlp_json(exporter.get_finished_spans())
