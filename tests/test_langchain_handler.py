"""The LangChain handler's capture on real runnables (no service: the submit strategy records the request)."""

from __future__ import annotations

import threading

from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from faithaudit.integrations.langchain import AUDIT_ID_KEY, FaithauditCallbackHandler


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"It is raining in {city} at 11 degrees."


def test_tool_outputs_become_sources_and_submit_does_not_block_the_chain():
    release = threading.Event()
    sent: list[dict] = []

    def slow_submit(body: dict) -> str:
        release.wait(10)  # the service is slow to answer: the chain must not wait for it
        sent.append(body)
        return "a" * 32

    def agent(question: str) -> str:
        observation = weather.invoke({"city": "Tarsquin"})
        return f"{observation.split(' at ')[0]}."

    handler = FaithauditCallbackHandler(
        submit=slow_submit, request_defaults={"thresholds": {"min_context_reliance": 1}}
    )
    answer = RunnableLambda(agent).invoke("Is it raining in Tarsquin?", config={"callbacks": [handler]})
    assert answer == "It is raining in Tarsquin." and sent == []  # invoke returned; the submit is still pending
    release.set()
    assert handler.audit_id == "a" * 32 and handler.runs[-1].metadata[AUDIT_ID_KEY] == "a" * 32
    (body,) = sent
    assert body["query"] == "Is it raining in Tarsquin?" and body["response"] == answer
    assert body["pipeline"]["documents"] == [
        {
            "id": "weather-1",
            "text": "It is raining in Tarsquin at 11 degrees.",
            "metadata": {"tool": "weather", "tool_input": {"city": "Tarsquin"}},
        }
    ]
    assert body["thresholds"] == {"min_context_reliance": 1}
    handler.close()


def test_a_run_without_sources_or_that_failed_is_not_audited():
    handler = FaithauditCallbackHandler(submit=lambda body: "x")
    assert RunnableLambda(lambda q: "no sources").invoke("q", config={"callbacks": [handler]}) == "no sources"
    assert handler.audit_id is None and handler.errors == []
