"""Span bookkeeping on the real tokenizer: each source's tokens decode back to its text."""

from cases import FICTIONAL_DOC, FILLER_DOCS, make_request

from faithaudit.audits.prompt.rag import build_layout


def _docs():
    return [FILLER_DOCS[0], FICTIONAL_DOC, ("multi", "First one here. Second one, with Dr. Who. Third!")]


def test_document_spans_decode_to_their_text(model):
    req = make_request(
        _docs(),
        "Where?",
        "Here.",
        prompt={"system": "Answer from the context.", "document_template": "[{id}] {text}"},
    )
    layout = build_layout(req, model)
    full = layout.build()
    assert len(full.spans) == 3
    for src in layout.sources:
        a, b = full.spans[src.index]
        assert model.decode(full.ids[a:b]) == src.text


def test_sentence_spans_tile_each_document(model):
    req = make_request(_docs(), "Where?", "Here.", audit={"granularity": "sentence"})
    layout = build_layout(req, model)
    full = layout.build()
    assert [s.id for s in layout.sources if s.document_id == "multi"] == ["multi:s0", "multi:s1", "multi:s2"]
    for doc_id, text in _docs():
        mine = [s for s in layout.sources if s.document_id == doc_id]
        assert "".join(s.text for s in mine) == text
        spans = [full.spans[s.index] for s in mine]
        for (_, b0), (a1, _) in zip(spans, spans[1:], strict=False):
            assert b0 == a1  # contiguous: sentence spans tile the document's tokens
        assert model.decode(full.ids[spans[0][0] : spans[-1][1]]) == text


def test_removing_a_source_equals_rendering_without_it(model):
    """The ablated prompt is the prompt of the request without that document, wrapper and separator included."""
    docs = _docs()
    spec = {"document_template": "<doc id={id}>{text}</doc>"}
    layout = build_layout(make_request(docs, "Where?", "Here.", prompt=spec), model)
    for i in range(len(docs)):
        rest = [d for j, d in enumerate(docs) if j != i]
        expected = build_layout(make_request(rest, "Where?", "Here.", prompt=spec), model).build()
        assert model.decode(layout.without(i).ids) == model.decode(expected.ids)
        assert "<doc id=" + docs[i][0] + ">" not in model.decode(layout.without(i).ids)
    no_context = layout.build([False] * len(docs))
    assert "<doc" not in model.decode(no_context.ids) and "Where?" in model.decode(no_context.ids)
