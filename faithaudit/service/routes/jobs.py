"""/v1/corpora, /v1/jobs, /v1/gates: work that needs the embedding model or the audit model runs on a worker.

Each POST validates, stores a job and enqueues it (202 + the job id to poll); the API never imports torch.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from faithaudit.api_schemas import (
    CorpusCreate,
    CorpusDocumentsIn,
    CorpusInfo,
    GateStatus,
    GateVerdict,
    JobAccepted,
    JobStatus,
)
from faithaudit.api_schemas.edge import printable
from faithaudit.api_schemas.request import CORPUS_NAME_PATTERN
from faithaudit.api_schemas.service import JobLinks, PlannedCost
from faithaudit.errors import FieldError, InvalidRequestError, NotFoundError
from faithaudit.service.deps import CurrentTenant, EnqueuerDep, SettingsDep, StoreDep
from faithaudit.service.validation import load_json, parse_body
from faithaudit.store import JobRow

router = APIRouter(tags=["corpora", "gates"])
_ID = re.compile(r"[0-9a-f]{32}")


def _accepted(
    row: JobRow, background: BackgroundTasks, store, enqueuer, *, path: str, planned: PlannedCost | None = None
) -> JSONResponse:
    background.add_task(_enqueue, row.id, store=store, enqueuer=enqueuer)
    links = JobLinks(self=f"{path}/{row.id}")
    body = JobAccepted(id=row.id, kind=row.kind, status=row.status, links=links, planned=planned)
    return JSONResponse(
        body.model_dump(mode="json"), status_code=202, headers={"Location": body.links.self}, background=background
    )


def _enqueue(job_id: str, *, store, enqueuer) -> None:
    if enqueuer.send_job(job_id):
        store.mark_job_enqueued(job_id)


def _job_status(row: JobRow) -> dict:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "error": row.error,
        "result": row.result,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def _owned_job(store, job_id: str, tenant: str) -> JobRow:
    row = store.get_job(job_id, tenant=tenant) if _ID.fullmatch(job_id) else None
    if row is None:
        raise NotFoundError(f"no job {job_id}")
    return row


def _is_corpus_name(name: str) -> bool:
    """A name no corpus can have (a NUL, a lone surrogate, a slash) is a 404 before any database sees it."""
    return re.fullmatch(CORPUS_NAME_PATTERN, name) is not None


def _corpus_info(row) -> CorpusInfo:
    return CorpusInfo(
        name=row.name,
        status=row.status,
        num_documents=row.num_documents,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# -- corpora -----------------------------------------------------------------------------------------------------


@router.post("/v1/corpora", status_code=202, response_model=JobAccepted)
async def create_corpus(
    request: Request, background: BackgroundTasks, tenant: CurrentTenant, store: StoreDep, enqueuer: EnqueuerDep
) -> JSONResponse:
    """Register a corpus and build its index on a worker from the given documents (202 + job id). A corpus whose
    build failed is rebuilt from these documents; any other existing name, or one a job is working on, is 409."""
    body = parse_body(CorpusCreate, await request.body(), "corpus")
    payload = {"corpus": body.name, "documents": [d.model_dump(mode="json") for d in body.documents]}
    row = await run_in_threadpool(store.create_corpus_job, tenant, body.name, payload)
    return _accepted(row, background, store, enqueuer, path="/v1/jobs")


@router.post("/v1/corpora/{name}/documents", status_code=202, response_model=JobAccepted)
async def add_corpus_documents(
    name: str,
    request: Request,
    background: BackgroundTasks,
    tenant: CurrentTenant,
    store: StoreDep,
    enqueuer: EnqueuerDep,
) -> JSONResponse:
    """Embed more documents into a ready corpus on a worker (404 unknown; 409 while it is built or has failed)."""
    corpus = await run_in_threadpool(store.get_corpus, tenant, name) if _is_corpus_name(name) else None
    if corpus is None:
        raise NotFoundError(f"no corpus {printable(name)!r}")
    body = parse_body(CorpusDocumentsIn, await request.body(), "documents")
    payload = {"corpus": name, "documents": [d.model_dump(mode="json") for d in body.documents]}
    row = await run_in_threadpool(store.add_corpus_job, tenant, name, payload)  # 409 unless ready and idle
    return _accepted(row, background, store, enqueuer, path="/v1/jobs")


@router.delete("/v1/corpora/{name}", status_code=202, response_model=JobAccepted)
async def delete_corpus(
    name: str, background: BackgroundTasks, tenant: CurrentTenant, store: StoreDep, enqueuer: EnqueuerDep
) -> JSONResponse:
    """Delete a corpus: it is gone from the API at once (its name free once the returned job has removed its
    files on a worker). Audits queued against it fail with "was deleted" when a worker takes them; while a job
    builds or extends it, deleting is 409 (retry once that job has ended)."""
    if not _is_corpus_name(name):
        raise NotFoundError(f"no corpus {printable(name)!r}")
    row = await run_in_threadpool(store.delete_corpus_job, tenant, name)
    return _accepted(row, background, store, enqueuer, path="/v1/jobs")


@router.get("/v1/corpora", response_model=list[CorpusInfo])
def list_corpora(tenant: CurrentTenant, store: StoreDep) -> list[CorpusInfo]:
    return [_corpus_info(r) for r in store.list_corpora(tenant)]


@router.get("/v1/corpora/{name}", response_model=CorpusInfo)
def get_corpus(name: str, tenant: CurrentTenant, store: StoreDep) -> CorpusInfo:
    row = store.get_corpus(tenant, name) if _is_corpus_name(name) else None
    if row is None:
        raise NotFoundError(f"no corpus {printable(name)!r}")
    return _corpus_info(row)


@router.get("/v1/jobs/{job_id}", response_model=JobStatus)
def get_job(job_id: str, tenant: CurrentTenant, store: StoreDep) -> JobStatus:
    return JobStatus(**_job_status(_owned_job(store, job_id, tenant)))


# -- gates -------------------------------------------------------------------------------------------------------


@router.post("/v1/gates", status_code=202, response_model=JobAccepted)
async def submit_gate(
    request: Request,
    background: BackgroundTasks,
    tenant: CurrentTenant,
    settings: SettingsDep,
    store: StoreDep,
    enqueuer: EnqueuerDep,
) -> JSONResponse:
    """Run a gate suite (cases inline) on a worker; poll ``GET /v1/gates/{id}`` for the verdict."""
    raw = await request.body()
    row, cost = await run_in_threadpool(_store_gate, raw, tenant=tenant, settings=settings, store=store)
    return _accepted(row, background, store, enqueuer, path="/v1/gates", planned=cost)


def _store_gate(raw: bytes, *, tenant: str, settings, store) -> tuple[JobRow, PlannedCost]:
    from faithaudit.gating.suite import parse_suite_data, resolve_cases
    from faithaudit.service.validation import admission, check_corpus, check_served, planned

    suite = parse_suite_data(load_json(raw))
    cases = resolve_cases(suite, base_dir=None)
    costs = []
    for case in cases:
        prefix = f"cases[{case.index}].request."
        try:
            check_served(case.request, settings)
            costs.append(planned(case.request, settings, check_corpus(case.request, store, tenant)))
        except InvalidRequestError as exc:
            fields = [FieldError(prefix + f.path, f.msg) for f in exc.fields]
            raise InvalidRequestError(f"case {case.name!r}: {exc.message}", fields=fields) from None
    payload = {
        "suite": suite.name,
        "cases": [{"name": c.name, "request": c.request.model_dump(mode="json", exclude_unset=True)} for c in cases],
    }
    cost = PlannedCost(
        forward_passes=sum(c.forward_passes for c in costs),
        tokens=sum(c.tokens for c in costs),
        tokens_method=",".join(sorted({c.tokens_method for c in costs})) or "tokenizer",
    )
    row = store.create_job(
        tenant=tenant, kind="gate", payload=payload, planned_tokens=cost.tokens,
        admit=admission(settings, cost.tokens, field="cases"),
    )  # fmt: skip
    return row, cost


@router.get("/v1/gates/{gate_id}", response_model=GateStatus)
def get_gate(gate_id: str, tenant: CurrentTenant, store: StoreDep) -> GateStatus:
    row = _owned_job(store, gate_id, tenant)
    if row.kind != "gate":
        raise NotFoundError(f"no gate {gate_id}")
    verdict = GateVerdict.model_validate(row.result) if row.status == "succeeded" and row.result else None
    return GateStatus(**_job_status(row), verdict=verdict)
