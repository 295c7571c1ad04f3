"""The OpenAPI document is the contract fuzzers and clients read: every POST declares its body, every route its
security and every status it can answer in the real error envelope; /docs and /redoc need no network."""

from __future__ import annotations

import re

import pytest
from inprocess import service_client

from faithaudit.service.openapi import BODIES, PUBLIC


@pytest.fixture()
def client(tmp_path):
    with service_client(f"sqlite:///{tmp_path / 'fa.db'}", tmp_path) as (c, store):
        c.headers["X-API-Key"] = store.create_api_key("acme")[0]
        yield c


def _resolve(spec: dict, ref: str) -> dict:
    assert ref.startswith("#/components/schemas/"), ref
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_every_operation_is_complete(client):
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(spec)  # FastAPI's 422 shape is not what the service answers
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    operations = [(p, m, op) for p, item in spec["paths"].items() for m, op in item.items()]
    assert len(operations) >= 14
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        if method == "post":
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            assert "$ref" in body and _resolve(spec, body["$ref"]).get("properties"), where
        if path not in PUBLIC:
            assert op.get("security"), where
        for status in ("405", "500") + (("401", "422") if path not in PUBLIC and path != "/metrics" else ()):
            assert status in op["responses"], (where, status)
        for status, response in op["responses"].items():
            if status >= "400":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (where, status)
    assert {(p, m) for p, m, _ in operations if m == "post"} == set(BODIES)


def test_docs_load_their_assets_from_this_server(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""", html)
        found = [a or b for a, b in urls]
        assert found and all(u.startswith("/") for u in found), (page, found)
        for url in found:
            assert client.get(url).status_code == 200, url
    assert "securitySchemes" in client.get("/openapi.json").text


def test_an_empty_cursor_is_the_first_page(client):
    r = client.get("/v1/audits?cursor=")
    assert r.status_code == 200 and r.json()["items"] == []
