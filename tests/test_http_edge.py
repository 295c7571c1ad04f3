"""The HTTP edge (``service.limits.RequestEdge`` and the error handlers): a stalled body is a 408 that closes
the connection, a non-JSON body or an encoding the API does not decode is a 415, a 405 says what is allowed, and a
5xx tells the client not to reuse the connection. All in the error envelope."""

from __future__ import annotations

import asyncio
import json

import pytest
from inprocess import service_client

from faithaudit.service.limits import RequestEdge, is_json_type


@pytest.fixture()
def client(tmp_path):
    with service_client(f"sqlite:///{tmp_path / 'fa.db'}", tmp_path, raise_server_exceptions=False) as (c, store):

        @c.app.get("/boom")
        def boom():
            raise RuntimeError("a bug")

        c.headers["X-API-Key"] = store.create_api_key("acme")[0]
        yield c


def test_a_body_that_stops_arriving_is_408_with_connection_close():
    async def inner(scope, receive, send):  # a route reading its body
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    parts = [{"type": "http.request", "body": b'{"query": "abc', "more_body": True}]

    async def stalled_receive():
        if parts:
            return parts.pop(0)
        await asyncio.sleep(30)  # the rest of Content-Length never comes

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    edge = RequestEdge(inner, max_bytes=10_000, read_timeout=0.2)
    asyncio.run(asyncio.wait_for(edge(scope, stalled_receive, send), 5))
    start, body = sent
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert json.loads(body["body"])["error"]["code"] == "request_timeout"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, 415),
        ({"Content-Type": "application/json; charset=utf-8"}, 422),  # JSON: it reaches validation
        ({"Content-Type": "application/problem+json"}, 422),
    ],
)
def test_content_type_and_encoding(client, headers, status):
    r = client.post("/v1/audits", content=b'{"query": "x"}', headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == ("unsupported_media_type" if status == 415 else "invalid_request")


def test_405_names_the_allowed_methods_and_5xx_closes_the_connection(client):
    r = client.put("/v1/audits")
    assert r.status_code == 405 and "GET" in r.headers["allow"] and "POST" in r.headers["allow"]
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = client.get("/boom")
    assert r.status_code == 500 and r.headers["connection"] == "close"
    assert r.json()["error"]["code"] == "internal_error"


def test_is_json_type():
    assert is_json_type(b"application/json") and is_json_type(b"Application/JSON; charset=utf-8")
    assert is_json_type(b"application/vnd.api+json") and not is_json_type(b"text/json")


def test_metrics_need_the_operator_token(tmp_path):
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with service_client(url, tmp_path, metrics_token="m" * 24) as (c, store):
        key = store.create_api_key("acme")[0]
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 401  # a tenant key
        r = c.get("/metrics", headers={"Authorization": "Bearer " + "m" * 24})
        assert r.status_code == 200 and "faithaudit_audits" in r.text and "acme" not in r.text
    with service_client(url, tmp_path, environment="production") as (c, _):
        assert c.get("/metrics").status_code == 403
