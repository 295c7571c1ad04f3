"""Corpora and retriever replay with the real embedding model, FAISS index and audit model."""

from __future__ import annotations

import json

import pytest
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS
from typer.testing import CliRunner

from faithaudit.api_schemas import AuditRequest, CorpusDocumentIn
from faithaudit.errors import InvalidRequestError

CORPUS_DOCS = [{"id": i, "text": t, "metadata": {"source": f"kb/{i}.md"}} for i, t in [*FILLER_DOCS, FICTIONAL_DOC]]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A corpus `kb` of tenant `acme`, written by `faithaudit corpus add` (in this process)."""
    import os

    from faithaudit.cli import app
    from faithaudit.config import get_settings

    root = tmp_path_factory.mktemp("data")
    jsonl = root / "kb.jsonl"
    jsonl.write_text("\n".join(json.dumps(d) for d in CORPUS_DOCS[:6]) + "\n")
    more = root / "more.jsonl"
    more.write_text("\n".join(json.dumps(d) for d in CORPUS_DOCS[6:]) + "\n")
    env = {"FAITHAUDIT_DATA_DIR": str(root / "fa"), "FAITHAUDIT_DATABASE_URL": f"sqlite:///{root / 'fa.db'}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        for name, path in (("kb", jsonl), ("kb", more)):  # created, then appended
            result = runner.invoke(app, ["corpus", "add", name, str(path), "--tenant", "acme"])
            assert result.exit_code == 0, result.output
        assert "10 document(s)" in result.output
        bad = root / "bad.jsonl"
        bad.write_text('{"text": "ok"}\n{"id": "x:y", "text": "t"}\n')
        result = runner.invoke(app, ["corpus", "add", "kb2", str(bad), "--tenant", "acme"])
        assert result.exit_code == 2 and "line 2" in result.output and "id" in result.output
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        get_settings.cache_clear()
    return root / "fa"


def test_corpus_is_persisted_and_reloaded(data_dir):
    from faithaudit.retrieval.corpus import add_documents, load_corpus

    corpus = load_corpus(data_dir, "acme", "kb")  # a fresh load from disk
    assert len(corpus) == 10 and corpus.ids[-1] == "key"
    hits = corpus.search(FICTIONAL_QUERY, 3)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].document.id == "key"
    assert hits[0].document.metadata == {"source": "kb/key.md"}
    assert hits[0].score > hits[1].score
    with pytest.raises(InvalidRequestError, match="already in the corpus"):
        add_documents(data_dir, "acme", "kb", [CorpusDocumentIn(id="f1", text="again")])
    from faithaudit.errors import NotFoundError

    with pytest.raises(NotFoundError):
        load_corpus(data_dir, "globex", "kb")  # corpora are per tenant


def test_retriever_audit_finds_the_document_with_the_fictional_answer(data_dir, model):
    from faithaudit.audits.run import audit_request
    from faithaudit.retrieval.replay import CorpusLibrary

    request = AuditRequest.model_validate(
        {
            "query": FICTIONAL_QUERY,
            "response": FICTIONAL_RESPONSE,
            "pipeline": {"kind": "retriever", "corpus": "kb", "k": 3},
            "audit": {"methods": ["leave_one_out", "no_context"], "answer_flip_top_k": 0, "placebos": 0, "orders": 1},
        }
    )
    report = audit_request(request, model, tenant="acme", corpora=CorpusLibrary(data_dir))
    r = report.retrieval
    assert r.corpus == "kb" and r.k == 3 and len(r.documents) == 3 and r.next_document.rank == 4
    assert r.documents[0].id == "key" and r.documents[0].metadata == {"source": "kb/key.md"}
    assert [s.id for s in report.sources] == [d.id for d in r.documents]
    top = max(report.sources, key=lambda s: s.reliance)
    assert top.id == "key" and top.reliance > 2.0
    sens = report.retrieval_sensitivity
    assert sens.depth_k_minus_1.document_ids == [d.id for d in r.documents[:2]]
    assert sens.depth_k_plus_1.document_ids == [d.id for d in r.documents] + [r.next_document.id]
    replace = {v.name: v for v in sens.replacements}
    assert set(replace) == {f"replace:{d.id}" for d in r.documents}
    assert replace["replace:key"].delta < -2.0  # losing the key document to the next-ranked one hurts
    assert replace["replace:key"].delta == min(v.delta for v in sens.replacements)
    assert abs(sens.logprob_at_k - report.summary.logprob_full) < 0.05  # same context, same score
    stage = report.cost.by_stage["retrieval_sensitivity"]
    assert stage.forward_passes == 1 + 2 + 3  # k+1 context, depth k and k-1, three replacements
    assert report.cost.forward_passes == sum(s.forward_passes for s in report.cost.by_stage.values())

    import io

    from rich.console import Console

    from faithaudit.cli import print_report

    out = io.StringIO()
    print_report(report, console=Console(file=out, width=120))
    assert "retrieved from kb (k=3): 1. key" in out.getvalue() and "replace:key" in out.getvalue()

    unknown = request.model_copy(update={"pipeline": request.pipeline.model_copy(update={"corpus": "nope"})})
    with pytest.raises(InvalidRequestError) as exc:
        audit_request(unknown, model, tenant="acme", corpora=CorpusLibrary(data_dir))
    assert exc.value.fields[0].path == "pipeline.corpus"
    too_deep = request.model_copy(update={"pipeline": request.pipeline.model_copy(update={"k": 11})})
    with pytest.raises(InvalidRequestError) as exc:
        audit_request(too_deep, model, tenant="acme", corpora=CorpusLibrary(data_dir))
    assert exc.value.fields[0].path == "pipeline.k"


def test_a_retried_add_job_adds_nothing_twice_and_a_removed_corpus_is_gone(data_dir):
    """``applied_by`` (the job id) makes a worker's add idempotent: its retry after a kill that came after the
    write finds the job in the manifest; ``remove_corpus`` deletes the files under the corpus's lock."""
    from faithaudit.retrieval.corpus import add_documents, corpus_exists, load_corpus, remove_corpus

    docs = [CorpusDocumentIn(text="Bats hunt at dusk."), CorpusDocumentIn(text="Moths fly to the lamp.")]
    assert add_documents(data_dir, "acme", "scratch", docs, create=True, applied_by="job-1") == 2
    assert add_documents(data_dir, "acme", "scratch", docs, create=True, applied_by="job-1") == 2  # the retry
    assert add_documents(data_dir, "acme", "scratch", docs[:1], create=False, applied_by="job-2") == 3
    assert len(load_corpus(data_dir, "acme", "scratch")) == 3
    assert remove_corpus(data_dir, "acme", "scratch") and not corpus_exists(data_dir, "acme", "scratch")
    assert not remove_corpus(data_dir, "acme", "scratch")
