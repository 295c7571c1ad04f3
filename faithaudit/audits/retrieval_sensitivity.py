"""Retrieval sensitivity: how much the answer depends on the retriever's cut-off.

All variants are keep-masks over the top k+1 documents in rank order, scored against the fixed response, reusing
the cached prefix:

- depth k-1: the last retrieved document dropped;
- depth k+1: the next-ranked document added;
- replace:<id>: document <id> gone and the next-ranked one in the last slot, which is exactly what the retriever
  would return at depth k if <id> were not in the corpus.

Each is reported as log p(response | variant) and its ``delta`` against the top-k context, in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faithaudit.api_schemas import (
    AuditRequest,
    Document,
    RagPipeline,
    RetrievalInfo,
    RetrievalSensitivity,
    RetrievalVariant,
)
from faithaudit.audits.prompt.rag import build_layout
from faithaudit.audits.report.sources import DIGITS
from faithaudit.audits.scoring import logprobs, score_full_context, score_masks


@dataclass(frozen=True)
class Retrieved:
    """What a retriever returned for a request: the report's section, the top k, the next-ranked document."""

    info: RetrievalInfo
    documents: list[Document]
    next_document: Document | None


def retrieval_sensitivity(rag: AuditRequest, model, *, response: str, next_document) -> RetrievalSensitivity:
    """Score the retrieval variants of a resolved request (``rag.pipeline.documents`` = the top k)."""
    top = list(rag.pipeline.documents)
    k = len(top)
    docs = top + ([next_document] if next_document is not None else [])
    wide = rag.model_copy(
        update={
            "pipeline": RagPipeline(documents=docs),
            "audit": rag.audit.model_copy(update={"granularity": "document"}),
        }
    )
    layout = build_layout(wide, model)
    response_ids = model.encode(response)
    base = score_full_context(model, layout, response_ids, with_attention=False)

    n = len(docs)
    names: list[str] = ["at_k"]
    masks: list[list[bool]] = [[i < k for i in range(n)]]
    if k >= 1:
        names.append("depth_k_minus_1")
        masks.append([i < k - 1 for i in range(n)])
    if next_document is not None:
        for j in range(k):
            names.append(f"replace:{top[j].id}")
            masks.append([i != j for i in range(n)])
    scores = dict(
        zip(names, logprobs(score_masks(model, layout, response_ids, np.array(masks), base=base)), strict=True)
    )
    at_k = float(scores["at_k"])

    def variant(name: str, lp: float, mask: list[bool]) -> RetrievalVariant:
        return RetrievalVariant(
            name=name,
            document_ids=[d.id for d, keep in zip(docs, mask, strict=True) if keep],
            logprob=round(float(lp), DIGITS),
            delta=round(float(lp) - at_k, DIGITS),
        )

    minus = variant("depth_k_minus_1", scores["depth_k_minus_1"], masks[1])
    plus = variant("depth_k_plus_1", base.score.logprob, [True] * n) if next_document is not None else None
    replacements = [
        variant(name, scores[name], mask)
        for name, mask in zip(names, masks, strict=True)
        if name.startswith("replace:")
    ]
    deltas = [abs(v.delta) for v in [minus, plus, *replacements] if v is not None]
    return RetrievalSensitivity(
        logprob_at_k=round(at_k, DIGITS),
        depth_k_minus_1=minus,
        depth_k_plus_1=plus,
        replacements=replacements,
        max_abs_delta=round(max(deltas), DIGITS) if deltas else None,
    )
