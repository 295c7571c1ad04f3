"""Render a request to prompt tokens while keeping the exact token span of every source.

The user turn is ``template`` with ``{query}`` filled in and ``{context}`` standing for the documents, each
rendered through ``document_template`` and joined by ``document_separator``. The chat template renders the turn;
the rendered text is cut at the context into a head and a tail, and every piece (head, each document's wrapper,
each source's text, each separator, tail) is tokenized on its own. A prompt with some sources removed is the same
pieces without them, so the full prompt and every ablated prompt share their tokens up to the first removed source
(what lets scoring reuse the KV cache), and each source's tokens decode back to exactly its text.

Removing a source deletes its text; a document whose sources are all removed loses its wrapper and separator
too. Nothing is renumbered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from faithaudit.api_schemas import AuditRequest
from faithaudit.audits.prompt.layout import BuiltPrompt, Source
from faithaudit.audits.prompt.sentences import split_sentences
from faithaudit.errors import InvalidRequestError

if TYPE_CHECKING:  # the API process builds layouts with a tokenizer only, and never imports torch
    from faithaudit.api_schemas.agent import TraceStep
    from faithaudit.audits.model.adapter import TextAdapter
    from faithaudit.audits.prompt.agent import TrimRecord

_CONTEXT_MARK = "\u2063FAITHAUDIT_CONTEXT\u2063"


@dataclass(frozen=True)
class _Block:
    """One rendered document: wrapper head, its sources' token pieces, wrapper tail."""

    before: tuple[int, ...]
    units: tuple[tuple[int, tuple[int, ...]], ...]  # (source index, token ids)
    after: tuple[int, ...]


@dataclass(frozen=True)
class RagLayout:
    """A ``SourceLayout`` over documents (or their sentences): head, one block per document, tail."""

    sources: tuple[Source, ...]
    head: tuple[int, ...]
    blocks: tuple[_Block, ...]
    separator: tuple[int, ...]
    tail: tuple[int, ...]
    user_template: str  # the user turn with {query} filled and {context} left as is
    granularity: Literal["document", "sentence"] = "document"
    steps: tuple[TraceStep, ...] = ()
    trim: TrimRecord | None = None
    document_template: str = "{text}"
    document_ids: tuple[str, ...] = ()  # one per block, in prompt order

    insertion_length_fixed = True  # a block's pieces are tokenized on their own; n + 1 blocks, n separators

    @property
    def reorderable(self) -> bool:
        return len(self.blocks) >= 2

    @property
    def insertion_slots(self) -> int:
        """A placebo document may go before any document or after the last: positions 0..len(documents)."""
        return len(self.blocks)

    def inserted(self, position: int, source_id: str, text: str, model: TextAdapter) -> BuiltPrompt:
        """The full prompt with one more document (``text``, wrapped like the others) before document
        ``position``; the new source has index ``num_sources``."""
        before, after = self.document_template.split("{text}")
        block = _Block(
            before=tuple(model.encode(before.replace("{id}", source_id))),
            units=((self.num_sources, tuple(model.encode(text))),),
            after=tuple(model.encode(after.replace("{id}", source_id))),
        )
        blocks = self.blocks[:position] + (block,) + self.blocks[position:]
        extra = Source(index=self.num_sources, id=source_id, kind="document", document_id=source_id, text=text)
        return replace(self, sources=self.sources + (extra,), blocks=blocks).build()

    def permuted(self, order: Sequence[int]) -> RagLayout | None:
        """The same sources with the documents in ``order`` (indices into the current order). Source indices
        do not change, so keep-masks mean the same sources in every order."""
        if sorted(order) != list(range(len(self.blocks))):
            raise ValueError(f"order {list(order)} is not a permutation of {len(self.blocks)} documents")
        return replace(
            self,
            blocks=tuple(self.blocks[k] for k in order),
            document_ids=tuple(self.document_ids[k] for k in order),
        )

    @property
    def num_sources(self) -> int:
        return len(self.sources)

    def build(
        self, keep: Sequence[bool] | None = None, *, replace: Mapping[int, Sequence[int]] | None = None
    ) -> BuiltPrompt:
        """The prompt tokens with only the sources where ``keep`` is true (all when ``keep`` is None), and the
        tokens of the sources in ``replace`` swapped for the given ones."""
        replace = replace or {}
        n = self.num_sources
        if keep is not None and len(keep) != n:
            raise ValueError(f"keep has {len(keep)} entries for {n} sources")
        ids: list[int] = list(self.head)
        spans: dict[int, tuple[int, int]] = {}
        first = True
        for block in self.blocks:
            units = [(i, toks) for i, toks in block.units if keep is None or keep[i]]
            if not units:
                continue
            if not first:
                ids.extend(self.separator)
            first = False
            ids.extend(block.before)
            for i, toks in units:
                toks = tuple(replace.get(i, toks))
                spans[i] = (len(ids), len(ids) + len(toks))
                ids.extend(toks)
            ids.extend(block.after)
        ids.extend(self.tail)
        return BuiltPrompt(ids=tuple(ids), spans=spans)

    def without(self, *removed: int) -> BuiltPrompt:
        gone = set(removed)
        return self.build([i not in gone for i in range(self.num_sources)])


def build_layout(request: AuditRequest, model: TextAdapter) -> RagLayout:
    """Tokenize the request's prompt piece by piece. Documents become sources, or their sentences do."""
    spec = request.prompt
    user = spec.template.replace("{context}", _CONTEXT_MARK).replace("{query}", request.query)
    rendered = model.chat_prompt(system=spec.system, user=user)
    if rendered.count(_CONTEXT_MARK) != 1:
        raise InvalidRequestError.for_field("prompt.template", "the chat template lost the {context} slot")
    head_text, tail_text = rendered.split(_CONTEXT_MARK)
    wrap_before, wrap_after = spec.document_template.split("{text}")

    sources: list[Source] = []
    blocks: list[_Block] = []
    for doc in request.pipeline.documents:
        if request.audit.granularity == "sentence":
            pieces = [
                (f"{doc.id}:s{k}", doc.text[a:b], "sentence") for k, (a, b) in enumerate(split_sentences(doc.text))
            ]
        else:
            pieces = [(doc.id, doc.text, "document")]
        units = []
        for sid, text, kind in pieces:
            index = len(sources)
            sources.append(Source(index=index, id=sid, kind=kind, document_id=doc.id, text=text))
            units.append((index, tuple(model.encode(text))))
        blocks.append(
            _Block(
                before=tuple(model.encode(wrap_before.replace("{id}", doc.id))),
                units=tuple(units),
                after=tuple(model.encode(wrap_after.replace("{id}", doc.id))),
            )
        )
    return RagLayout(
        sources=tuple(sources),
        head=tuple(model.encode(head_text)),
        blocks=tuple(blocks),
        separator=tuple(model.encode(spec.document_separator)),
        tail=tuple(model.encode(tail_text)),
        user_template=spec.template.replace("{query}", request.query),
        granularity=request.audit.granularity,
        document_template=spec.document_template,
        document_ids=tuple(doc.id for doc in request.pipeline.documents),
    )
