"""Retriever replay: the top k of a tenant's corpus for the query, as the documents of a RAG audit.

``CorpusLibrary(data_dir)`` implements ``audits.run.Corpora``: ``audit_request`` asks it for what the retriever
returns (and the next-ranked document, for the sensitivity variants of ``audits.retrieval_sensitivity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faithaudit.api_schemas import AuditRequest, RetrievalInfo, RetrievedDocument
from faithaudit.audits.report.sources import DIGITS
from faithaudit.audits.retrieval_sensitivity import Retrieved
from faithaudit.errors import InvalidRequestError, NotFoundError


@dataclass(frozen=True)
class CorpusLibrary:
    """The corpora under ``data_dir`` (one folder per tenant), searched with the FAISS index of each corpus."""

    data_dir: Path

    def retrieve(self, request: AuditRequest, *, tenant: str) -> Retrieved:
        from faithaudit.retrieval.corpus import load_corpus
        from faithaudit.retrieval.embeddings import EMBEDDING_MODEL

        pipeline = request.pipeline
        try:
            corpus = load_corpus(self.data_dir, tenant, pipeline.corpus)
        except NotFoundError:
            raise InvalidRequestError.for_field("pipeline.corpus", f"no corpus {pipeline.corpus!r}") from None
        if pipeline.k > len(corpus):
            raise InvalidRequestError.for_field(
                "pipeline.k",
                f"k={pipeline.k} is more than the {len(corpus)} documents of corpus {pipeline.corpus!r}",
            )
        hits = corpus.search(request.query, pipeline.k + 1)
        top, nxt = hits[: pipeline.k], (hits[pipeline.k] if len(hits) > pipeline.k else None)
        info = RetrievalInfo(
            corpus=pipeline.corpus,
            k=pipeline.k,
            embedding_model=EMBEDDING_MODEL,
            documents=[_retrieved(h) for h in top],
            next_document=_retrieved(nxt) if nxt else None,
        )
        return Retrieved(info=info, documents=[h.document for h in top], next_document=nxt and nxt.document)


def _retrieved(hit) -> RetrievedDocument:
    return RetrievedDocument(
        id=hit.document.id, rank=hit.rank, score=round(hit.score, DIGITS), metadata=hit.document.metadata
    )
