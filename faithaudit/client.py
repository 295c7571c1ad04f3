"""A Python client for the faithaudit service (httpx), typed by the API's pydantic schemas.

    from faithaudit.client import Client
    with Client("http://127.0.0.1:8000", api_key="fa_...") as fa:
        accepted = fa.submit(request)                 # AuditRequest or a dict; 202 at once
        status = fa.wait(accepted.id, timeout=600)    # polls until succeeded / failed / cancelled
        report = fa.report(accepted.id)               # AuditReport

``AsyncClient`` has the same methods as coroutines. Connection errors and 503 answers are retried with exponential
backoff (``retries``, ``backoff``); a submit without an ``idempotency_key`` gets a random one, so a retried submit
never creates a second audit.

    ClientError
    ├── ApiError              the service answered 4xx/5xx (status, code, message, fields)
    ├── ServiceUnavailable    no answer (connection refused, timeouts) or 503, after the retries
    ├── AuditFailed           ``report``/``wait_report`` on an audit that failed or was cancelled
    └── WaitTimeout           ``wait`` ran out of time
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from faithaudit.api_schemas import (
    AuditAccepted,
    AuditList,
    AuditReport,
    AuditRequest,
    AuditStatus,
    CorpusInfo,
    GateStatus,
    GateSuite,
    JobAccepted,
    JobStatus,
    Usage,
)
from faithaudit.errors import FaithauditError

__all__ = ["ApiError", "AsyncClient", "AuditFailed", "Client", "ClientError", "ServiceUnavailable", "WaitTimeout"]

T = TypeVar("T", bound=BaseModel)
S = TypeVar("S", AuditStatus, JobStatus, GateStatus)  # what a poll waits on: it has a ``status``
TERMINAL = ("succeeded", "failed", "cancelled")


class ClientError(FaithauditError):
    code = "client_error"


class ApiError(ClientError):
    def __init__(
        self, status: int, code: str, message: str, fields: list[dict] | None = None, *, retry_after: int | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.api_code, self.api_message, self.api_fields = status, code, message, fields or []
        self.retry_after = retry_after  # seconds, on a 429 (a quota): submit again after it


class ServiceUnavailable(ClientError):
    code = "service_unavailable"


class AuditFailed(ClientError):
    code = "audit_failed"


class WaitTimeout(ClientError):
    code = "wait_timeout"


def _body(obj: BaseModel | dict) -> dict:
    return obj.model_dump(mode="json", exclude_unset=True) if isinstance(obj, BaseModel) else obj


def _docs(documents: list) -> list[dict]:
    return [_body(d) if isinstance(d, BaseModel | dict) else {"text": str(d)} for d in documents]


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        err = response.json()["error"]
        code, message, fields = err.get("code", "error"), err.get("message", ""), err.get("fields", [])
    except (ValueError, KeyError, TypeError):
        code, message, fields = "http_error", response.text[:500], []
    retry = response.headers.get("Retry-After", "")
    raise ApiError(response.status_code, code, message, fields, retry_after=int(retry) if retry.isdigit() else None)


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        poll_interval: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff, self.poll_interval = retries, backoff, poll_interval
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2**attempt)

    @staticmethod
    def _retryable(response: httpx.Response) -> bool:
        return response.status_code == 503

    def _unavailable(self, method: str, path: str, last: Exception | httpx.Response | None) -> ServiceUnavailable:
        what = f"HTTP {last.status_code}" if isinstance(last, httpx.Response) else f"{type(last).__name__}: {last}"
        return ServiceUnavailable(f"{method} {self.base_url}{path}: no answer after {self.retries + 1} tries ({what})")

    @staticmethod
    def _list_params(
        limit: int, cursor: str | None, status: str | None, gate_passed: bool | None, tag: str | None = None
    ) -> dict:
        params: dict[str, Any] = {"limit": limit}
        if tag:
            params["tag"] = tag
        if cursor:
            params["cursor"] = cursor
        if status:
            params["status"] = status
        if gate_passed is not None:
            params["gate_passed"] = str(gate_passed).lower()
        return params


class Client(_Base):
    """Synchronous client; use as a context manager or call ``close()``."""

    def __init__(self, base_url: str, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, model: type[T] | None = None, **kw: Any) -> T | httpx.Response:
        last: Exception | httpx.Response | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt - 1))
            try:
                response = self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                last = exc
                continue
            if self._retryable(response):
                last = response
                continue
            _raise_for(response)
            return model.model_validate(response.json()) if model is not None else response
        raise self._unavailable(method, path, last)

    # -- audits --------------------------------------------------------------------------------------------
    def submit(self, request: AuditRequest | dict, *, idempotency_key: str | None = None) -> AuditAccepted:
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return self._call("POST", "/v1/audits", AuditAccepted, json=_body(request), headers=headers)

    def get(self, audit_id: str) -> AuditStatus:
        return self._call("GET", f"/v1/audits/{audit_id}", AuditStatus)

    def wait(self, audit_id: str, timeout: float = 600.0) -> AuditStatus:
        """Poll until the audit is succeeded, failed or cancelled; ``WaitTimeout`` after ``timeout`` seconds."""
        return self._poll(lambda: self.get(audit_id), f"audit {audit_id}", timeout)

    def _poll(self, fetch: Callable[[], S], what: str, timeout: float) -> S:
        deadline = time.monotonic() + timeout
        while True:
            status = fetch()
            if status.status in TERMINAL:
                return status
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{what} still {status.status} after {timeout:g} s")
            time.sleep(self.poll_interval)

    def report(self, audit_id: str) -> AuditReport:
        """The report of a succeeded audit (``AuditFailed`` if it failed or is not finished)."""
        status = self.get(audit_id)
        if status.report is None:
            raise AuditFailed(f"audit {audit_id} is {status.status}: {status.error or 'no report yet'}")
        return status.report

    def phoenix_annotations(self, audit_id: str) -> dict:
        """The audit as Phoenix span and document annotations plus OpenTelemetry evaluation events (one JSON
        object; ``faithaudit.exporters.phoenix``). The audit must be of an imported trace."""
        import time as _time

        from faithaudit.exporters.phoenix import export_bundle

        return export_bundle(self.report(audit_id), time_unix_nano=_time.time_ns(), audit_id=audit_id)

    def list(
        self,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: str | None = None,
        gate_passed: bool | None = None,
        tag: str | None = None,
    ) -> AuditList:
        params = self._list_params(limit, cursor, status, gate_passed, tag)
        return self._call("GET", "/v1/audits", AuditList, params=params)

    def delete(self, audit_id: str) -> None:
        self._call("DELETE", f"/v1/audits/{audit_id}")

    # -- corpora and jobs ----------------------------------------------------------------------------------
    def create_corpus(self, name: str, documents: list) -> JobAccepted:
        return self._call("POST", "/v1/corpora", JobAccepted, json={"name": name, "documents": _docs(documents)})

    def add_documents(self, corpus: str, documents: list) -> JobAccepted:
        return self._call("POST", f"/v1/corpora/{corpus}/documents", JobAccepted, json={"documents": _docs(documents)})

    def corpus(self, name: str) -> CorpusInfo:
        return self._call("GET", f"/v1/corpora/{name}", CorpusInfo)

    def delete_corpus(self, name: str) -> JobAccepted:
        """Delete a corpus (its files are removed by the returned job)."""
        return self._call("DELETE", f"/v1/corpora/{name}", JobAccepted)

    def usage(self) -> Usage:
        """This tenant's quotas and what counts against them now."""
        return self._call("GET", "/v1/usage", Usage)

    def job(self, job_id: str) -> JobStatus:
        return self._call("GET", f"/v1/jobs/{job_id}", JobStatus)

    def wait_job(self, job_id: str, timeout: float = 600.0) -> JobStatus:
        return self._poll(lambda: self.job(job_id), f"job {job_id}", timeout)

    # -- gates ---------------------------------------------------------------------------------------------
    def submit_gate(self, suite: GateSuite | dict) -> JobAccepted:
        return self._call("POST", "/v1/gates", JobAccepted, json=_body(suite))

    def gate(self, gate_id: str) -> GateStatus:
        return self._call("GET", f"/v1/gates/{gate_id}", GateStatus)

    def wait_gate(self, gate_id: str, timeout: float = 3600.0) -> GateStatus:
        return self._poll(lambda: self.gate(gate_id), f"gate {gate_id}", timeout)


class AsyncClient(_Base):
    """The same API with ``httpx.AsyncClient``: every method is a coroutine."""

    def __init__(self, base_url: str, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, model: type[T] | None = None, **kw: Any) -> T | httpx.Response:
        last: Exception | httpx.Response | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt - 1))
            try:
                response = await self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                last = exc
                continue
            if self._retryable(response):
                last = response
                continue
            _raise_for(response)
            return model.model_validate(response.json()) if model is not None else response
        raise self._unavailable(method, path, last)

    async def submit(self, request: AuditRequest | dict, *, idempotency_key: str | None = None) -> AuditAccepted:
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return await self._call("POST", "/v1/audits", AuditAccepted, json=_body(request), headers=headers)

    async def get(self, audit_id: str) -> AuditStatus:
        return await self._call("GET", f"/v1/audits/{audit_id}", AuditStatus)

    async def wait(self, audit_id: str, timeout: float = 600.0) -> AuditStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = await self.get(audit_id)
            if status.status in TERMINAL:
                return status
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"audit {audit_id} still {status.status} after {timeout:g} s")
            await asyncio.sleep(self.poll_interval)

    async def report(self, audit_id: str) -> AuditReport:
        status = await self.get(audit_id)
        if status.report is None:
            raise AuditFailed(f"audit {audit_id} is {status.status}: {status.error or 'no report yet'}")
        return status.report

    async def list(
        self,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: str | None = None,
        gate_passed: bool | None = None,
        tag: str | None = None,
    ) -> AuditList:
        params = self._list_params(limit, cursor, status, gate_passed, tag)
        return await self._call("GET", "/v1/audits", AuditList, params=params)

    async def delete(self, audit_id: str) -> None:
        await self._call("DELETE", f"/v1/audits/{audit_id}")

    async def create_corpus(self, name: str, documents: list) -> JobAccepted:
        body = {"name": name, "documents": _docs(documents)}
        return await self._call("POST", "/v1/corpora", JobAccepted, json=body)

    async def add_documents(self, corpus: str, documents: list) -> JobAccepted:
        body = {"documents": _docs(documents)}
        return await self._call("POST", f"/v1/corpora/{corpus}/documents", JobAccepted, json=body)

    async def job(self, job_id: str) -> JobStatus:
        return await self._call("GET", f"/v1/jobs/{job_id}", JobStatus)

    async def delete_corpus(self, name: str) -> JobAccepted:
        return await self._call("DELETE", f"/v1/corpora/{name}", JobAccepted)

    async def usage(self) -> Usage:
        return await self._call("GET", "/v1/usage", Usage)

    async def submit_gate(self, suite: GateSuite | dict) -> JobAccepted:
        return await self._call("POST", "/v1/gates", JobAccepted, json=_body(suite))

    async def gate(self, gate_id: str) -> GateStatus:
        return await self._call("GET", f"/v1/gates/{gate_id}", GateStatus)
