"""The hostile edge (``api_schemas.edge``): strings that cannot be stored or sent back and absurd nesting are a 422
naming the field before anything is stored, on SQLite and PostgreSQL; a path parameter no row can have is a 404
before any database sees it; what was accepted stays readable."""

from __future__ import annotations

import json
import uuid

import pytest
from cases import load_example
from inprocess import service_client
from test_store import make_url, pg_admin  # noqa: F401 - fixtures: both databases

from faithaudit.api_schemas.edge import MAX_DEPTH, EdgeError, check_edge

SMALL = load_example("fictional_fact.json") | {
    "audit": {"num_ablations": 4, "answer_flip_top_k": 0, "placebos": 0, "orders": 1}
}
LONE = "\\ud800"  # a JSON escape that decodes to a lone surrogate


def test_check_edge_names_the_field():
    cases = {
        "response": {"response": "a\ud800b"},
        "pipeline.documents[1].text": {"pipeline": {"documents": [{"text": "ok"}, {"text": "x\x00y"}]}},
        "metadata": {"metadata": {"k\udfff": 1}},
    }
    for path, data in cases.items():
        with pytest.raises(EdgeError) as err:
            check_edge(data)
        assert err.value.path == path, err.value
    deep: dict = {}
    node = deep
    for _ in range(MAX_DEPTH + 1):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(EdgeError, match="nested deeper"):
        check_edge(deep)
    check_edge({"query": "naïve café — 東京 🚀", "n": [1, 2.5, None, True]})  # real text passes


@pytest.fixture()
def hostile_api(make_url):  # noqa: F811
    with service_client(make_url(), signing_secret="x" * 40) as (client, store):
        key = store.create_api_key("acme")[0]
        client.store = store
        yield client, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def _with(path: list, value_json: str) -> bytes:
    """SMALL with the string at ``path`` replaced by raw JSON text (so a lone-surrogate escape survives)."""
    marker = f"@@{uuid.uuid4().hex}@@"
    body = json.loads(json.dumps(SMALL))
    node = body
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = marker
    return json.dumps(body).replace(f'"{marker}"', value_json).encode()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["response"], f'"a{LONE}b"'),
        (["prompt", "system"], f'"sys{LONE}"'),
        (["prompt", "document_template"], f'"{{text}}{LONE}"'),
        (["model", "production_model"], f'"x{LONE}"'),
        (["query"], '"what\\u0000now?"'),
    ],
)
def test_bad_strings_in_an_audit_are_422_naming_the_field(hostile_api, path, value):
    client, headers = hostile_api
    r = client.post("/v1/audits", content=_with(path, value), headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["fields"][0]["path"] == ".".join(path)
    assert client.get("/v1/audits", headers=headers).json()["items"] == []  # nothing stored


def test_deep_metadata_and_bad_names_never_leave_a_row(hostile_api):
    client, headers = hostile_api
    deep = "[" * 300 + "]" * 300
    docs = f'[{{"id": "a", "text": "hello", "metadata": {{"x": {deep}}}}}]'
    r = client.post("/v1/corpora", content=f'{{"name": "c1", "documents": {docs}}}'.encode(), headers=headers)
    assert r.status_code == 422 and "nested deeper" in r.json()["error"]["message"], r.text
    assert client.get("/v1/corpora/c1", headers=headers).status_code == 404  # no orphan corpus row
    meta = f'[{{"id": "a", "text": "hello", "metadata": {{"k": "v{LONE}"}}}}]'
    r = client.post("/v1/corpora", content=f'{{"name": "c2", "documents": {meta}}}'.encode(), headers=headers)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "documents[0].metadata.k"
    for url in ("/v1/corpora/a%00b", "/v1/corpora/a%ED%A0%80"):
        assert client.get(url, headers=headers).status_code == 404
        assert client.post(url + "/documents", content=b"{}", headers=headers).status_code == 404
    r = client.post("/v1/gates", content=f'{{"name": "s{LONE}", "cases": []}}'.encode(), headers=headers)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "name"


def test_strange_but_valid_text_is_stored_and_read_back_exactly(hostile_api):
    client, headers = hostile_api
    odd = 'naïve 🚀 東京 \u2028 line\u2029 tab\t \\ "quoted" <b>bold</b> \u202eRTL \ufeff zero\u200bwidth'
    body = json.dumps({**SMALL, "query": f"What? {odd}", "metadata": {odd: [odd, {"k": odd}]}, "tags": ["t:1"]})
    r = client.post("/v1/audits", content=body.encode(), headers=headers)
    assert r.status_code == 202, r.text
    audit_id = r.json()["id"]
    assert client.get(f"/v1/audits/{audit_id}", headers=headers).status_code == 200
    stored = client.store.get_audit(audit_id).request
    sent = json.loads(body)
    assert stored["query"] == sent["query"] and stored["metadata"] == sent["metadata"]
    listed = client.get("/v1/audits?tag=t:1", headers=headers).json()["items"]
    assert [x["id"] for x in listed] == [audit_id]
