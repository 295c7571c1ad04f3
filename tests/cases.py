"""Shared test data: example requests, short real-model cases and the golden requests. Import it as ``cases``
(tests/ is on the path); fixtures live in ``conftest.py``."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_BENCHMARKS = ROOT.parent / "shared" / "data" / "benchmarks"
GOLDEN_CASES = {"rag": "fictional_fact.json", "agent": "agent_case.json"}


def load_example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def make_request(documents: list[tuple[str, str]], query: str, response: str | None, **extra):
    from faithaudit.api_schemas import AuditRequest

    body = {
        "query": query,
        "pipeline": {"kind": "rag", "documents": [{"id": i, "text": t} for i, t in documents]},
        **({"response": response} if response is not None else {}),
        **extra,
    }
    return AuditRequest.model_validate(body)


# Short, fictional and plain-knowledge documents for fast real-model cases (~25 tokens each).
FILLER_DOCS = [
    ("f1", "The Amazon rainforest covers much of the Amazon basin in South America."),
    ("f2", "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris."),
    ("f3", "Photosynthesis lets green plants turn sunlight, water and carbon dioxide into sugar."),
    ("f4", "The Pacific Ocean is the largest and deepest of the five oceans on Earth."),
    ("f5", "Mount Kilimanjaro is a dormant volcano in Tanzania and the highest peak in Africa."),
    ("f6", "Honey bees communicate the location of flowers to each other with a waggle dance."),
    ("f7", "The violin is a string instrument usually played with a bow made of horsehair."),
    ("f8", "Glaciers are slow rivers of ice that form where snow builds up over many years."),
    ("f9", "The printing press was developed in Europe by Johannes Gutenberg around 1440."),
]
FICTIONAL_DOC = (
    "key",
    "Vellmora is a small island nation in the Corsic Sea. Its capital is the harbour town of Tarsquin.",
)
FICTIONAL_QUERY = "What is the capital of Vellmora?"
FICTIONAL_RESPONSE = "The capital of Vellmora is Tarsquin."


def golden_request(name: str):
    """The golden case ``name`` (rag or agent): its example with ``num_ablations: 8``; the agent case also replays
    one turn through the tool registry, so that the agent tests can read the same report."""
    from faithaudit.api_schemas import AuditRequest

    body = load_example(GOLDEN_CASES[name])
    body["audit"] = {**body.get("audit", {}), "num_ablations": 8} | ({"replay_turns": 1} if name == "agent" else {})
    return AuditRequest.model_validate(body)
