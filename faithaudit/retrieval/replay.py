"""Retriever replay: retrieve the top k of a corpus, audit them as documents, and measure retrieval sensitivity.

``audit_request`` is what the CLI, the workers and the gate call for any request: a ``rag`` request goes straight
to the engine; a ``retriever`` request is resolved against the tenant's corpus first.

Retrieval interventions (all keep-masks over the top k+1 documents in rank order, scored against the fixed
response, reusing the cached prefix):

- depth k-1: the last retrieved document dropped;
- depth k+1: the next-ranked document added;
- replace:<id>: document <id> gone and the next-ranked one in the last slot, which is exactly what the retriever
  would return at depth k if <id> were not in the corpus.

Each is reported as log p(response | variant) and its ``delta`` against the top-k context, in nats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faithaudit.api_schemas import (
    AuditReport,
    AuditRequest,
    MethodCost,
    RagPipeline,
    RetrievalInfo,
    RetrievalSensitivity,
    RetrievalVariant,
    RetrievedDocument,
)
from faithaudit.errors import InvalidRequestError, NotFoundError

Progress = Callable[[float, str], None]
_DIGITS = 6


def audit_request(
    request: AuditRequest,
    model,
    *,
    data_dir: Path,
    tenant: str,
    progress: Progress | None = None,
    max_sources: int | None = None,
    max_source_chars: int | None = None,
    tools=None,
) -> AuditReport:
    """Audit any request; retriever pipelines are replayed against ``tenant``'s corpus under ``data_dir``.
    ``tools`` builds the tool registry of agent replays (``faithaudit.tools.registry_for``)."""
    from faithaudit.audits.engine import run_audit

    limits = {"max_sources": max_sources, "max_source_chars": max_source_chars}
    if request.pipeline.kind != "retriever":
        return run_audit(request, model, progress=progress, tools=tools, **limits)

    from faithaudit.retrieval.corpus import load_corpus
    from faithaudit.retrieval.embeddings import EMBEDDING_MODEL

    pipeline = request.pipeline
    try:
        corpus = load_corpus(data_dir, tenant, pipeline.corpus)
    except NotFoundError:
        raise InvalidRequestError.for_field("pipeline.corpus", f"no corpus {pipeline.corpus!r}") from None
    if pipeline.k > len(corpus):
        raise InvalidRequestError.for_field(
            "pipeline.k", f"k={pipeline.k} is more than the {len(corpus)} documents of corpus {pipeline.corpus!r}"
        )
    hits = corpus.search(request.query, pipeline.k + 1)
    top, nxt = hits[: pipeline.k], (hits[pipeline.k] if len(hits) > pipeline.k else None)
    rag = resolved_request(request, [h.document for h in top])

    def scaled(fraction: float, stage: str) -> None:  # the audit is ~90% of the work, sensitivity the rest
        if progress is not None:
            progress(0.9 * fraction, stage)

    report = run_audit(rag, model, progress=scaled, **limits)
    t0, (passes0, tokens0) = time.perf_counter(), model.counter.snapshot()
    sensitivity = retrieval_sensitivity(rag, model, response=report.response, next_document=nxt and nxt.document)
    passes, tokens = model.counter.snapshot()
    stage = MethodCost(
        forward_passes=passes - passes0, tokens_processed=tokens - tokens0, seconds=round(time.perf_counter() - t0, 3)
    )
    cost = report.cost.model_copy(
        update={
            "forward_passes": report.cost.forward_passes + stage.forward_passes,
            "tokens_processed": report.cost.tokens_processed + stage.tokens_processed,
            "seconds": round(report.cost.seconds + stage.seconds, 3),
            "by_stage": {**report.cost.by_stage, "retrieval_sensitivity": stage},
        }
    )
    if progress is not None:
        progress(1.0, "retrieval_sensitivity")
    info = RetrievalInfo(
        corpus=pipeline.corpus,
        k=pipeline.k,
        embedding_model=EMBEDDING_MODEL,
        documents=[_retrieved(h) for h in top],
        next_document=_retrieved(nxt) if nxt else None,
    )
    return report.model_copy(update={"retrieval": info, "retrieval_sensitivity": sensitivity, "cost": cost})


def resolved_request(request: AuditRequest, documents) -> AuditRequest:
    """The same request with the retrieved documents as a frozen ``rag`` pipeline."""
    return request.model_copy(update={"pipeline": RagPipeline(documents=list(documents))})


def retrieval_sensitivity(rag: AuditRequest, model, *, response: str, next_document) -> RetrievalSensitivity:
    """Score the retrieval variants of a resolved request (``rag.pipeline.documents`` = the top k)."""
    from faithaudit.audits.prompt import build_layout
    from faithaudit.audits.scoring import logprobs, score_full_context, score_masks

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
            logprob=round(float(lp), _DIGITS),
            delta=round(float(lp) - at_k, _DIGITS),
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
        logprob_at_k=round(at_k, _DIGITS),
        depth_k_minus_1=minus,
        depth_k_plus_1=plus,
        replacements=replacements,
        max_abs_delta=round(max(deltas), _DIGITS) if deltas else None,
    )


def _retrieved(hit) -> RetrievedDocument:
    return RetrievedDocument(
        id=hit.document.id, rank=hit.rank, score=round(hit.score, _DIGITS), metadata=hit.document.metadata
    )
