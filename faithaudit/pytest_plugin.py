"""The faithaudit pytest plugin (registered as ``pytest11``; nothing heavy at import).

    def test_answer_uses_the_policy(faithaudit):
        report = faithaudit.audit("cases/refund.json")          # a request file, dict or AuditRequest
        assert_relies_on(report, ["policy"], min_nats=2)

    @pytest.mark.faithaudit(case="cases/refund.json")
    def test_refund(faithaudit_report):
        assert_not_parametric(faithaudit_report)

Audits run in-process on the local model (loaded once per process), or on a service with
``--faithaudit-server URL`` (the key from FAITHAUDIT_API_KEY). Audits are deterministic, so reports are cached on
disk (``--faithaudit-cache``, default ``.faithaudit_cache``) under a key of the request, the model's revision and
faithaudit's version; writes are atomic, so pytest-xdist workers share the cache safely. Under GitHub Actions the
audits of the session are written to the job summary ($GITHUB_STEP_SUMMARY).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from faithaudit.testing import assert_not_parametric, assert_relies_on, assert_thresholds

__all__ = ["Auditor", "assert_not_parametric", "assert_relies_on", "assert_thresholds"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faithaudit", "faithaudit reliance audits")
    group.addoption(
        "--faithaudit-server", default=None, help="Audit on this faithaudit service (key: FAITHAUDIT_API_KEY)."
    )
    group.addoption("--faithaudit-cache", default=None, help="Report cache folder (default: .faithaudit_cache).")
    group.addoption("--faithaudit-no-cache", action="store_true", help="Audit again even when a report is cached.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faithaudit(case): audit this request file for the faithaudit_report fixture")


class Auditor:
    """Audits requests once: a cached report, else an in-process audit or one on the server."""

    def __init__(self, *, cache_dir: Path | None, server: str | None, api_key: str | None, rootdir: Path) -> None:
        self.cache_dir, self.server, self.api_key, self.rootdir = cache_dir, server, api_key, rootdir
        self.audited: list[tuple[str, Any, bool]] = []  # (label, report, from cache)
        self._models: dict[str, Any] = {}

    def request(self, case: Any):
        from faithaudit.api_schemas import AuditRequest

        if isinstance(case, AuditRequest):
            return case
        if isinstance(case, dict):
            return AuditRequest.model_validate(case)
        path = Path(case)
        path = path if path.is_absolute() else self.rootdir / path
        return AuditRequest.model_validate_json(path.read_bytes())

    def audit(self, case: Any, *, label: str | None = None):
        from faithaudit.api_schemas import AuditReport

        request = self.request(case)
        key = self.key(request)
        cached = self._cache_path(key)
        if cached is not None and cached.is_file():
            report = AuditReport.model_validate_json(cached.read_bytes())
            self.audited.append((label or str(case)[:80], report, True))
            return report
        report = self._run(request)
        if cached is not None:
            _write_atomic(cached, report.model_dump_json())
        self.audited.append((label or str(case)[:80], report, False))
        return report

    def key(self, request) -> str:
        from faithaudit.audits.report.controls import faithaudit_version, request_sha256

        where = f"server:{self.server}:{self._server_version()}" if self.server else f"local:{self._revision(request)}"
        return hashlib.sha256(f"{request_sha256(request)}|{where}|{faithaudit_version()}".encode()).hexdigest()

    def _server_version(self) -> str:
        """The service's version (its OpenAPI ``info.version``), so an upgraded server is audited again."""
        if not hasattr(self, "_version"):
            import httpx

            self._version = httpx.get(f"{self.server.rstrip('/')}/openapi.json", timeout=10).json()["info"]["version"]
        return self._version

    def _revision(self, request) -> str:
        from faithaudit.audits.model.registry import resolve_model
        from faithaudit.config import get_settings

        return resolve_model(request.model.name or get_settings().default_model).revision

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{key}.json"

    def _run(self, request):
        if self.server is not None:
            from faithaudit.client import Client

            with Client(self.server, self.api_key) as client:
                accepted = client.submit(request)
                client.wait(accepted.id)
                return client.report(accepted.id)
        from faithaudit.audits.model.registry import load_model
        from faithaudit.audits.run import audit_request
        from faithaudit.config import get_settings
        from faithaudit.retrieval.replay import CorpusLibrary
        from faithaudit.tools import registry_for

        settings = get_settings()
        name = request.model.name or settings.default_model
        if name not in self._models:
            self._models[name] = load_model(name, settings)
        return audit_request(
            request, self._models[name], tools=registry_for, corpora=CorpusLibrary(settings.data_dir), tenant="local"
        )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@pytest.fixture(scope="session")
def faithaudit(pytestconfig: pytest.Config) -> Auditor:
    """Audits requests (local model or ``--faithaudit-server``), cached on disk."""
    option = pytestconfig.getoption
    cache = (
        None
        if option("--faithaudit-no-cache")
        else Path(option("--faithaudit-cache") or pytestconfig.rootpath / ".faithaudit_cache")
    )
    auditor = Auditor(
        cache_dir=cache,
        server=option("--faithaudit-server"),
        api_key=os.environ.get("FAITHAUDIT_API_KEY"),
        rootdir=pytestconfig.rootpath,
    )
    pytestconfig.stash[_AUDITOR] = auditor
    return auditor


@pytest.fixture()
def faithaudit_report(request: pytest.FixtureRequest, faithaudit: Auditor):
    """The report of the case named by ``@pytest.mark.faithaudit(case=...)``."""
    marker = request.node.get_closest_marker("faithaudit")
    if marker is None or "case" not in marker.kwargs:
        raise pytest.UsageError("faithaudit_report needs @pytest.mark.faithaudit(case='path/to/request.json')")
    return faithaudit.audit(marker.kwargs["case"], label=request.node.nodeid)


_AUDITOR = pytest.StashKey[Auditor]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    auditor = session.config.stash.get(_AUDITOR, None)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if auditor is None or not auditor.audited or not summary:
        return
    with open(summary, "a", encoding="utf-8") as fh:
        fh.write(step_summary(auditor.audited))


def step_summary(audited: list[tuple[str, Any, bool]]) -> str:
    """A Markdown table of the session's audits for GitHub's job summary."""
    rows = [
        "| test | context reliance (nats) | noise floor (nats) | decisive | gate | cached |",
        "|---|---|---|---|---|---|",
    ]
    for label, report, cached in audited:
        s = report.summary
        decisive = ", ".join(x.id for x in report.sources if x.label == "decisive") or "—"
        fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
        gate = "passed" if report.gate.passed else "failed"
        rows.append(
            f"| `{label}` | {fmt(s.context_reliance)} | {fmt(s.noise_floor_nats)} | {decisive} | {gate} | "
            f"{'yes' if cached else 'no'} |"
        )
    return "\n### faithaudit\n\n" + "\n".join(rows) + "\n"
