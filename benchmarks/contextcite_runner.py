"""ContextCite (PyPI ``context-cite``) run offline on a fixed response, with paragraphs as sources.

- ``import_context_cite()`` imports it with ``nltk.download`` neutralised (the package downloads ``punkt_tab`` at
  import time; the paragraph partitioner never needs it) and progress bars off.
- ``ParagraphPartitioner`` is the ``partitioner=`` hook: sources are the given paragraphs, joined by ``"\\n\\n"``,
  exactly as faithaudit renders documents with its default ``document_separator``.
- ``run_contextcite`` feeds the fixed response through ContextCite's output cache (it has no public argument for
  a response), then asks for the attributions of the whole response: ``num_ablations`` passes plus a Lasso fit.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

SEPARATOR = "\n\n"


class ContextCiteUnavailable(RuntimeError):
    pass


def contextcite_version() -> str | None:
    try:
        return importlib.metadata.version("context-cite")
    except importlib.metadata.PackageNotFoundError:
        return None


def import_context_cite() -> Any:
    """The ``context_cite`` module, imported offline. Raises ContextCiteUnavailable with the reason."""
    if "context_cite" in sys.modules:
        return sys.modules["context_cite"]
    if contextcite_version() is None:
        raise ContextCiteUnavailable("context-cite is not installed (make bench-setup installs the bench extra)")
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        import nltk
    except ImportError as exc:
        raise ContextCiteUnavailable(f"context-cite needs nltk: {exc}") from exc
    download = nltk.download
    nltk.download = lambda *args, **kwargs: True  # offline: the paragraph partitioner never splits sentences
    try:
        module = importlib.import_module("context_cite")
        utils = importlib.import_module("context_cite.utils")
    except ImportError as exc:
        raise ContextCiteUnavailable(f"context-cite could not be imported: {exc}") from exc
    finally:
        nltk.download = download
    utils.tqdm = lambda iterable, *args, **kwargs: iterable  # no progress bars in benchmark logs
    return module


def paragraph_partitioner(paragraphs: list[str]) -> Any:
    """A ContextCite partitioner whose sources are ``paragraphs`` (ablated ones are dropped with their separator)."""
    from context_cite.context_partitioner import BaseContextPartitioner

    class ParagraphPartitioner(BaseContextPartitioner):
        def __init__(self, parts: list[str]) -> None:
            super().__init__(SEPARATOR.join(parts))
            self.parts = list(parts)

        @property
        def num_sources(self) -> int:
            return len(self.parts)

        def split_context(self) -> None:  # already split
            return None

        def get_source(self, index: int) -> str:
            return self.parts[index]

        def get_context(self, mask: np.ndarray | None = None) -> str:
            keep = np.ones(len(self.parts), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
            return SEPARATOR.join(p for p, k in zip(self.parts, keep, strict=True) if k)

    return ParagraphPartitioner(paragraphs)


@dataclass(frozen=True)
class ContextCiteRun:
    weights: np.ndarray  # [n] ContextCite's attribution scores
    response_ids: list[int]  # the response tokens ContextCite attributed
    prompt_ids: list[int]  # the full-context prompt tokens it built


def run_contextcite(
    hf_model: Any,
    tokenizer: Any,
    paragraphs: list[str],
    query: str,
    response: str,
    *,
    num_ablations: int = 64,
    keep_probability: float = 0.5,
) -> ContextCiteRun:
    cc = import_context_cite()
    citer = cc.ContextCiter(
        hf_model,
        tokenizer,
        SEPARATOR.join(paragraphs),
        query,
        num_ablations=num_ablations,
        ablation_keep_prob=keep_probability,
        partitioner=paragraph_partitioner(paragraphs),
    )
    prompt_ids, prompt = citer._get_prompt_ids(return_prompt=True)
    citer._cache["output"] = prompt + response  # the fixed response, teacher-forced (no generation)
    with warnings.catch_warnings():  # its CUDA autocast on a CPU run: deprecation and "disabling autocast"
        warnings.simplefilter("ignore")
        weights = citer.get_attributions(verbose=False)
    return ContextCiteRun(
        weights=np.asarray(weights, dtype=np.float64),
        response_ids=list(citer._response_ids),
        prompt_ids=list(prompt_ids),
    )
