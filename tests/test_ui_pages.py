"""The reviewers' UI over HTTP (in-process, both databases): sign-in keeps the key in a browser-session cookie,
pages show only the signed-in tenant's audits, filters and pagination, compare, trends, errors as the API's
messages on HTML pages, user text shown as text, and nothing on a page points off the server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from inprocess import seed_audit, service_client
from test_store import make_url, pg_admin  # noqa: F401 - fixtures: both databases

from faithaudit.api_schemas import AuditReport

GOLDEN = AuditReport.model_validate_json((Path(__file__).parent / "data" / "golden" / "rag.json").read_text())
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
DAY = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _variant(**changes) -> AuditReport:
    """The golden report with some figures changed: another audit of the same case."""
    report = GOLDEN.model_copy(deep=True)
    for src in report.sources:
        if src.id in changes:
            src.reliance, src.label = changes[src.id]
    return report


def _failed(report: AuditReport) -> AuditReport:
    from faithaudit.api_schemas import GateFailure, GateResult

    failure = GateFailure(threshold="min_context_reliance", limit=50.0, measured=20.8, message="context_reliance < 50")
    return report.model_copy(update={"gate": GateResult(passed=False, failures=[failure],
                                                        thresholds={"min_context_reliance": 50.0})})  # fmt: skip


@pytest.fixture()
def ui(make_url):  # noqa: F811
    with service_client(make_url(), signing_secret="s" * 40) as (client, store):
        keys = {t: store.create_api_key(t)[0] for t in ("acme", "globex")}
        ids = {
            "a": seed_audit(store, "acme", GOLDEN, tags=["demo"], created_at=DAY),
            "b": seed_audit(
                store, "acme", _variant(d2=(1.0, "within_noise")), tags=["demo"], created_at=DAY + timedelta(days=1)
            ),  # fmt: skip
            "c": seed_audit(
                store,
                "acme",
                _failed(GOLDEN.model_copy(update={"query": EVIL})),
                tags=["other"],
                created_at=DAY + timedelta(days=2),
                query=EVIL,
            ),  # fmt: skip
            "g": seed_audit(store, "globex", GOLDEN, tags=["demo"], created_at=DAY),
        }
        yield client, keys, ids


def _sign_in(client, key: str):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return client.post("/ui/login", content=f"api_key={key}", headers=form, follow_redirects=False)


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-audit="([0-9a-f]{32})">', html)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "action", "xlink:href", "formaction")]


def _same_server(html: str) -> _Refs:
    refs = _Refs()
    refs.feed(html)
    assert all(r.startswith(("/", "#")) and not r.startswith("//") for r in refs.refs), refs.refs
    assert "http://" not in html and "https://" not in html
    return refs


def test_sign_in_sets_a_session_cookie_and_guards_every_page(ui):
    client, keys, ids = ui
    for path in ("/ui/audits", f"/ui/audits/{ids['a']}", "/ui/trends?tag=demo", f"/ui/compare?id={ids['a']}"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
    bad = _sign_in(client, "fa_not_a_key")
    assert bad.status_code == 401 and "api_key: invalid or revoked API key" in bad.text
    assert _sign_in(client, "").status_code == 422
    ok = _sign_in(client, keys["acme"])
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/audits"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert "max-age" not in cookie and "expires" not in cookie  # ends with the browser session
    page = client.get("/ui/audits")
    assert page.status_code == 200 and page.headers["content-security-policy"].startswith("default-src 'none'")
    out = client.post("/ui/logout", follow_redirects=False)
    assert out.status_code == 303 and client.get("/ui/audits", follow_redirects=False).status_code == 303


def test_list_filters_and_pages_one_tenants_audits(ui):
    client, keys, ids = ui
    _sign_in(client, keys["acme"])
    page = client.get("/ui/audits").text
    assert _rows(page) == [ids["c"], ids["b"], ids["a"]]  # newest first; globex's audit never shows
    assert _rows(client.get("/ui/audits?tag=demo").text) == [ids["b"], ids["a"]]
    assert _rows(client.get("/ui/audits?since=2026-11-21&until=2026-11-21").text) == [ids["b"]]
    assert _rows(client.get("/ui/audits?status=succeeded&gate=passed&tag=&since=").text) == [ids["b"], ids["a"]]
    assert _rows(client.get("/ui/audits?gate=failed").text) == [ids["c"]]
    assert _rows(client.get("/ui/audits?status=running").text) == []
    first = client.get("/ui/audits?limit=2").text
    assert _rows(first) == [ids["c"], ids["b"]]
    next_url = re.search(r'<a href="([^"]+)" id="next-page">', first).group(1)
    nxt = client.get(next_url.replace("&amp;", "&")).text
    assert _rows(nxt) == [ids["a"]] and 'id="next-page"' not in nxt
    assert "20.9" in page or "+20.9" in page  # the top source's reliance is a column
    _same_server(page)


def test_bad_filters_get_the_apis_errors_as_pages(ui):
    client, keys, _ = ui
    _sign_in(client, keys["acme"])
    for query, field, status in [
        ("since=yesterday", "since", 422),
        ("status=done", "status", 422),
        ("gate=maybe", "gate", 422),
        ("tag=%3Cb%3E", "tag", 422),
        ("limit=0", "limit", 422),
        ("cursor=abc", "cursor", 422),
    ]:
        r = client.get(f"/ui/audits?{query}")
        assert r.status_code == status, (query, r.status_code)
        assert r.headers["content-type"].startswith("text/html")
        assert f"<code>{field}</code>" in r.text or f"{field}:" in r.text, (query, r.text[:500])
    assert client.get("/ui/compare?id=" + "0" * 32).status_code == 422  # one id: not a comparison


def test_tenant_isolation_holds_in_the_ui(ui):
    client, keys, ids = ui
    _sign_in(client, keys["acme"])
    assert client.get(f"/ui/audits/{ids['g']}").status_code == 404
    assert client.get(f"/ui/compare?id={ids['a']}&id={ids['g']}").status_code == 404
    assert "globex" not in client.get("/ui/trends").text
    trend = client.get("/ui/trends?tag=demo").text
    assert len(re.findall(r'class="trend-point"', trend)) == 2  # acme's two demo audits, not globex's


def test_report_compare_and_trend_pages(ui):
    client, keys, ids = ui
    _sign_in(client, keys["acme"])
    report = client.get(f"/ui/audits/{ids['a']}").text
    assert sorted(re.findall(r'<circle class="point" data-source="([^"]+)"', report)) == ["d1", "d2", "d3", "d4"]
    assert 'href="/ui/audits"' in report and 'href="/ui/trends?tag=demo"' in report
    cmp = client.get(f"/ui/compare?id={ids['a']}&id={ids['b']}").text
    rows = re.findall(r'<tr data-source="([^"]+)" class="([^"]*)"', cmp)
    assert [r[0] for r in rows] == ["d1", "d2", "d3", "d4"]
    assert [r[0] for r in rows if r[1] == "changed"] == ["d2"]  # 20.9 -> 1.0 nats and decisive -> within_noise
    assert "-19.9" in cmp
    trend = client.get("/ui/trends?tag=demo").text
    assert re.findall(r"<tr><td>(2026-11-2\d)</td>", trend) == ["2026-11-21", "2026-11-20"]
    _same_server(cmp), _same_server(trend), _same_server(report)


def test_user_text_is_shown_as_text(ui):
    client, keys, ids = ui
    _sign_in(client, keys["acme"])
    for path in ("/ui/audits", f"/ui/audits/{ids['c']}", f"/ui/compare?id={ids['c']}&id={ids['a']}"):
        html = client.get(path).text
        assert "<script" not in html.lower() and "<img" not in html.lower(), path
        assert "&lt;script&gt;" in html, path
        assert _same_server(html).scripts == 0


def test_no_auth_mode_needs_no_sign_in(tmp_path):
    """`faithaudit serve --no-auth` (one local tenant): the UI opens without a key."""
    from fastapi.testclient import TestClient
    from inprocess import service_app

    app, store, enqueuer = service_app(f"sqlite:///{tmp_path / 'fa.db'}")
    seed_audit(store, "local", GOLDEN, tags=["demo"])
    app.state.auth_enabled = False
    try:
        with TestClient(app) as client:
            assert client.get("/ui/login", follow_redirects=False).headers["location"] == "/ui/audits"
            assert len(_rows(client.get("/ui/audits").text)) == 1
    finally:
        enqueuer.purge()
        store.dispose()


def test_odd_but_harmless_input_is_not_a_500(ui):
    client, keys, ids = ui
    _sign_in(client, keys["acme"])
    assert client.get("/ui/audits?until=9999-12-31").status_code == 200  # no upper bound, not an overflow
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    crowded = client.post("/ui/login", content="api_key=x&a=&b=&c=&d=&e=", headers=form, follow_redirects=False)
    assert crowded.status_code == 422 and "one field" in crowded.text
    forged = client.post("/ui/login", content=f"api_key={keys['globex']}", follow_redirects=False,
                         headers=form | {"Origin": "https://evil.example"})  # fmt: skip
    assert forged.status_code == 403 and "set-cookie" not in forged.headers  # login CSRF refused
