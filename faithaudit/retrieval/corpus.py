"""A corpus: a named, per-tenant set of documents in a LangChain FAISS index, persisted under the data dir.

    <data_dir>/corpora/<tenant-dir>/<name>/index.faiss, index.pkl   (LangChain ``FAISS.save_local``)
                                         /manifest.json             (name, tenant, model, document ids in order)

Scores are cosine similarities (normalised embeddings, inner-product index). Writers of one corpus are serialised by
a file lock, so several workers may add documents to it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from faithaudit.api_schemas import CorpusDocumentIn, Document, validation_fields
from faithaudit.api_schemas.request import CORPUS_NAME_PATTERN
from faithaudit.errors import FieldError, InvalidRequestError, NotFoundError
from faithaudit.retrieval.embeddings import EMBEDDING_MODEL, get_embeddings

_NAME = re.compile(CORPUS_NAME_PATTERN)


def tenant_dirname(tenant: str) -> str:
    """A safe folder name for any tenant string (readable part + hash, so distinct tenants never collide)."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", tenant)[:40] or "_"
    return f"{readable}-{hashlib.sha256(tenant.encode()).hexdigest()[:10]}"


def corpus_dir(data_dir: Path, tenant: str, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise InvalidRequestError.for_field("name", f"{name!r} is not a corpus name (letters, digits, '_.-')")
    return Path(data_dir) / "corpora" / tenant_dirname(tenant) / name


def corpus_exists(data_dir: Path, tenant: str, name: str) -> bool:
    return (corpus_dir(data_dir, tenant, name) / "manifest.json").is_file()


@dataclass(frozen=True)
class Hit:
    document: Document
    rank: int  # 1-based
    score: float  # cosine similarity


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus; ``search`` is the retriever."""

    name: str
    tenant: str
    store: object  # langchain_community.vectorstores.FAISS
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int) -> list[Hit]:
        """The top ``k`` documents (fewer when the corpus is smaller), best first."""
        k = min(k, len(self.ids))
        if k <= 0:
            return []
        found = self.store.similarity_search_with_score(query, k=k)
        return [
            Hit(
                document=Document(id=doc.id, text=doc.page_content, metadata=dict(doc.metadata)), rank=r, score=float(s)
            )
            for r, (doc, s) in enumerate(found, start=1)
        ]

    def as_retriever(self, k: int):
        """A LangChain retriever over the same index (for chains)."""
        return self.store.as_retriever(search_kwargs={"k": k})


def _faiss():
    """LangChain's FAISS vector store (langchain-community warns on import that it is being sunset)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="langchain_community")
        warnings.filterwarnings("ignore", message=".*langchain-community.*")
        from langchain_community.vectorstores import FAISS
    return FAISS


def _distance():
    from langchain_community.vectorstores.utils import DistanceStrategy

    return DistanceStrategy.MAX_INNER_PRODUCT


def load_corpus(data_dir: Path, tenant: str, name: str) -> Corpus:
    """Reload a persisted corpus; NotFoundError when this tenant has none by that name."""
    folder = corpus_dir(data_dir, tenant, name)
    if _read_manifest(folder) is None:
        raise NotFoundError(f"no corpus {name!r}")
    with _locked(folder, shared=True):
        return _load(folder, tenant, name)


def _load(folder: Path, tenant: str, name: str) -> Corpus:
    manifest = _read_manifest(folder)
    if manifest is None:
        raise NotFoundError(f"no corpus {name!r}")
    FAISS = _faiss()  # noqa: N806

    # The index was written by this module (pickle of the docstore): trusted input.
    store = FAISS.load_local(
        str(folder), get_embeddings(), allow_dangerous_deserialization=True, distance_strategy=_distance()
    )
    return Corpus(name=name, tenant=tenant, store=store, ids=tuple(manifest["ids"]))


def add_documents(
    data_dir: Path,
    tenant: str,
    name: str,
    documents: Iterable[CorpusDocumentIn],
    *,
    create: bool | None = None,
    applied_by: str | None = None,
) -> int:
    """Embed and append documents (creating the corpus if needed); returns the corpus's document count.

    ``create=True`` refuses an existing corpus, ``create=False`` a missing one, ``None`` accepts both.
    Ids must be unique within the corpus; a document without one gets ``doc-<n>``. ``applied_by`` (a job id) is
    kept in the manifest: the same job adding again (a retry after its worker died) changes nothing.
    """
    folder = corpus_dir(data_dir, tenant, name)
    folder.mkdir(parents=True, exist_ok=True)
    docs = list(documents)
    with _locked(folder):
        manifest = _read_manifest(folder)
        if manifest is not None and applied_by is not None and applied_by in manifest.get("applied_by", []):
            return len(manifest["ids"])
        if manifest is not None and create is True:
            raise InvalidRequestError.for_field("name", f"corpus {name!r} already exists")
        if manifest is None and create is False:
            raise NotFoundError(f"no corpus {name!r}")
        ids = list(manifest["ids"]) if manifest else []
        seen = set(ids)
        new_ids: list[str] = []
        for i, doc in enumerate(docs):
            doc_id = doc.id or f"doc-{len(ids) + len(new_ids) + 1}"
            if doc_id in seen:
                raise InvalidRequestError.for_field(f"documents[{i}].id", f"{doc_id!r} is already in the corpus")
            seen.add(doc_id)
            new_ids.append(doc_id)
        if not docs and manifest is not None:
            return len(ids)
        from langchain_core.documents import Document as LCDocument

        FAISS = _faiss()  # noqa: N806

        lc_docs = [
            LCDocument(page_content=d.text, metadata=dict(d.metadata), id=i) for d, i in zip(docs, new_ids, strict=True)
        ]
        if manifest is None:
            if not lc_docs:
                raise InvalidRequestError.for_field("documents", "a new corpus needs at least one document")
            store = FAISS.from_documents(lc_docs, get_embeddings(), ids=new_ids, distance_strategy=_distance())
        else:
            store = _load(folder, tenant, name).store
            store.add_documents(lc_docs, ids=new_ids)
        store.save_local(str(folder))
        ids += new_ids
        applied = ((manifest or {}).get("applied_by", []) + ([applied_by] if applied_by else []))[-1000:]
        _write_manifest(
            folder,
            {"name": name, "tenant": tenant, "embedding_model": EMBEDDING_MODEL, "ids": ids, "applied_by": applied},
        )
    return len(ids)


def remove_corpus(data_dir: Path, tenant: str, name: str) -> bool:
    """Delete a corpus's files (under its lock, so no build writes meanwhile); whether there were any."""
    folder = corpus_dir(data_dir, tenant, name)
    if not folder.is_dir():
        return False
    with _locked(folder):
        shutil.rmtree(folder, ignore_errors=True)
    return True


def read_jsonl(path: Path) -> list[CorpusDocumentIn]:
    """Documents from a JSON Lines file (``{"id"?, "text", "metadata"?}`` per line); errors name the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError.for_field(str(path), f"cannot read ({exc})") from exc
    docs: list[CorpusDocumentIn] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            docs.append(CorpusDocumentIn.model_validate_json(line))
        except ValidationError as exc:
            fields = [FieldError(f"line {n}: {p}", m) for p, m in validation_fields(exc)]
            raise InvalidRequestError(
                f"{path}: line {n}: " + "; ".join(f"{f.path.split(': ', 1)[1]}: {f.msg}" for f in fields),
                fields=fields,
            ) from None
    if not docs:
        raise InvalidRequestError.for_field(str(path), "no documents")
    return docs


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        return None


def _write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest))
    tmp.replace(folder / "manifest.json")


@contextmanager
def _locked(folder: Path, *, shared: bool = False) -> Iterator[None]:
    with open(folder / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
