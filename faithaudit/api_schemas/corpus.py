"""Corpora: named, per-tenant document sets embedded for retriever replay (``pipeline.kind = "retriever"``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from faithaudit.api_schemas.agent import check_source_id
from faithaudit.api_schemas.request import CORPUS_NAME_PATTERN

MAX_DOCUMENTS_PER_CALL = 10_000


class CorpusDocumentIn(BaseModel):
    """One document to index; ``id`` defaults to ``doc-<n>`` (n counts the corpus's documents from 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, min_length=1, max_length=200)
    text: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("document text is empty")
        return v

    @field_validator("id")
    @classmethod
    def _id_chars(cls, v: str | None) -> str | None:
        return None if v is None else check_source_id(v)


class CorpusDocumentsIn(BaseModel):
    """``POST /v1/corpora/{name}/documents``."""

    model_config = ConfigDict(extra="forbid")

    documents: list[CorpusDocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_CALL)


class CorpusCreate(CorpusDocumentsIn):
    """``POST /v1/corpora``: a new corpus and its first documents."""

    name: str = Field(pattern=CORPUS_NAME_PATTERN)


CorpusStatusName = Literal["pending", "ready", "failed"]


class CorpusInfo(BaseModel):
    name: str
    status: CorpusStatusName = Field(
        description="pending until a worker has built its index; failed when the build failed (``error`` says why; "
        "POST /v1/corpora with the same name rebuilds it)."
    )
    num_documents: int
    error: str | None = Field(None, description="Why the build failed.")
    created_at: datetime
    updated_at: datetime
