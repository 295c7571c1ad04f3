"""Request metadata and tags: validated at the edge, stored, filterable (``GET /v1/audits?tag=``) on SQLite and
PostgreSQL, carried into the report, shown as text (never markup) in the HTML page."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from cases import load_example
from inprocess import service_client
from pydantic import ValidationError
from test_store import make_url, pg_admin  # noqa: F401 - fixtures: both databases

from faithaudit.api_schemas import AuditReport, AuditRequest
from faithaudit.pages.report import render_report_html

SMALL = load_example("fictional_fact.json") | {
    "audit": {"num_ablations": 4, "answer_flip_top_k": 0, "placebos": 0, "orders": 1}
}
GOLDEN = json.loads((Path(__file__).parent / "data" / "golden" / "rag.json").read_text())


def test_metadata_and_tags_are_validated():
    ok = AuditRequest.model_validate({**SMALL, "metadata": {"trace_id": "abc", "n": [1, 2]}, "tags": ["prod", "prod"]})
    assert ok.tags == ["prod"] and ok.metadata["trace_id"] == "abc"
    for bad, path in [
        ({"tags": ["has space"]}, "tags"),
        ({"tags": [f"t{i}" for i in range(17)]}, "tags"),
        ({"metadata": {"blob": "x" * 20_000}}, "metadata"),
        ({"metadata": "not an object"}, "metadata"),
    ]:
        with pytest.raises(ValidationError) as err:
            AuditRequest.model_validate({**SMALL, **bad})
        assert err.value.errors()[0]["loc"][0] == path


@pytest.fixture()
def tagged_api(make_url):  # noqa: F811
    with service_client(make_url(), signing_secret="s" * 40) as (client, store):
        keys = {t: store.create_api_key(t)[0] for t in ("acme", "globex")}
        yield client, store, keys


def test_tags_filter_the_list_per_tenant_and_go_with_the_audit(tagged_api):
    client, store, keys = tagged_api

    def submit(tenant, tags):
        body = {**SMALL, "query": f"q {uuid.uuid4().hex}?", "tags": tags, "metadata": {"trace_id": tenant}}
        r = client.post("/v1/audits", json=body, headers={"X-API-Key": keys[tenant]})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    a = submit("acme", ["checkout", "prod"])
    b = submit("acme", ["prod"])
    submit("acme", [])
    submit("globex", ["prod"])  # another tenant's tag never shows
    h = {"X-API-Key": keys["acme"]}
    prod = client.get("/v1/audits?tag=prod", headers=h).json()["items"]
    assert {x["id"] for x in prod} == {a, b} and all("prod" in x["tags"] for x in prod)
    assert [x["id"] for x in client.get("/v1/audits?tag=checkout", headers=h).json()["items"]] == [a]
    assert client.get("/v1/audits?tag=has%20space", headers=h).status_code == 422
    assert client.delete(f"/v1/audits/{a}", headers=h).status_code == 204
    assert [x["id"] for x in client.get("/v1/audits?tag=checkout", headers=h).json()["items"]] == []
    assert store.get_audit(b).request["metadata"] == {"trace_id": "acme"}


def test_the_report_carries_them_and_the_page_shows_them_as_text():
    report = AuditReport.model_validate(
        GOLDEN | {"tags": ["<b>x</b>"], "metadata": {"<script>alert(1)</script>": "<img src=x onerror=alert(1)>"}}
    )
    html = render_report_html(report)
    assert "<script>alert" not in html and "<img src=x" not in html and "&lt;script&gt;" in html
    assert 'id="request-labels"' in html


def test_the_client_sends_the_tag_filter():
    from faithaudit.client import Client

    assert Client._list_params(20, None, None, None, "prod") == {"limit": 20, "tag": "prod"}
