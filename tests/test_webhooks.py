"""Completion webhooks: only allowed hosts at submit (422 naming callback_url), the signature a receiver checks,
the retry policy, and one real POST to a local receiver. The worker's delivery with a retry runs in
test_service_e2e (a 503, then the retried, signed POST)."""

from __future__ import annotations

import json

import pytest
from cases import load_example
from inprocess import service_client
from webhook_receiver import Receiver

from faithaudit import webhooks

SMALL = load_example("fictional_fact.json") | {"audit": {"num_ablations": 4, "placebos": 0, "orders": 1}}


def test_hosts_signatures_and_retry_policy():
    allowed = ["hooks.example.com", "127.0.0.1:9000"]
    assert webhooks.host_allowed("https://hooks.example.com/x", allowed)
    assert webhooks.host_allowed("http://127.0.0.1:9000/x", allowed)
    assert not webhooks.host_allowed("http://127.0.0.1:9001/x", allowed)
    assert not webhooks.host_allowed("https://hooks.example.com.evil.net/x", allowed)
    payload = b'{"audit_id":"a"}'
    header = webhooks.signature("k" * 32, payload, 1_000)
    assert webhooks.verify_signature("k" * 32, payload, header, now=1_100)
    assert not webhooks.verify_signature("k" * 32, payload + b" ", header, now=1_100)  # body changed
    assert not webhooks.verify_signature("x" * 32, payload, header, now=1_100)  # another secret
    assert not webhooks.verify_signature("k" * 32, payload, header, now=2_000)  # replayed too late
    assert not webhooks.verify_signature("k" * 32, payload, "garbage", now=1_100)
    assert [webhooks.retry_delay(n, 10) for n in range(8)] == [10, 20, 40, 80, 160, 320, 640, 900]
    assert [webhooks.should_retry(s) for s in (None, 500, 503, 429, 200, 204, 400, 404)] == [True] * 4 + [False] * 4


def test_one_signed_post_reaches_a_local_receiver():
    with Receiver() as receiver:
        payload = webhooks.encode({"audit_id": "a" * 32, "status": "succeeded"})
        assert webhooks.post(receiver.url, payload, secret="s" * 32, timeout=5, attempt=1) == 200
        ((path, headers, body),) = receiver.deliveries
    assert body == payload and json.loads(body)["status"] == "succeeded"
    assert webhooks.verify_signature("s" * 32, body, headers[webhooks.SIGNATURE_HEADER])
    assert webhooks.post("http://127.0.0.1:9/closed", payload, secret="s", timeout=2, attempt=1) is None


def test_each_tenant_gets_its_own_webhook_key(tmp_path):
    with service_client(f"sqlite:///{tmp_path / 'fa.db'}", tmp_path, signing_secret="s" * 40) as (client, store):
        keys = {t: {"X-API-Key": store.create_api_key(t)[0]} for t in ("acme", "globex")}
        acme = client.get("/v1/webhooks/secret", headers=keys["acme"]).json()["secret"]
        again = client.get("/v1/webhooks/secret", headers=keys["acme"]).json()["secret"]
        globex = client.get("/v1/webhooks/secret", headers=keys["globex"]).json()["secret"]
        assert acme == again and acme != globex and len(acme) == 64 and acme != "s" * 40
        assert client.get("/v1/webhooks/secret").status_code == 401
        assert (tmp_path / "callback_secret").is_file()  # its own secret, never the report-link one


@pytest.mark.parametrize(
    ("hosts", "url", "status"),
    [
        ([], "http://127.0.0.1:8080/hook", 422),  # webhooks off by default
        (["hooks.example.com"], "http://127.0.0.1:8080/hook", 422),
        (["hooks.example.com"], "https://hooks.example.com/faithaudit", 202),
        (["hooks.example.com"], "ftp://hooks.example.com/x", 422),  # the schema's URL rule
        (["hooks.example.com"], "https://hooks.example.com:99999/x", 422),  # a port out of range: not a 500
    ],
)
def test_submit_refuses_hosts_the_operator_did_not_allow(tmp_path, hosts, url, status):
    with service_client(f"sqlite:///{tmp_path / 'fa.db'}", tmp_path, callback_hosts=hosts) as (client, store):
        key = store.create_api_key("acme")[0]
        r = client.post("/v1/audits", json=SMALL | {"callback_url": url}, headers={"X-API-Key": key})
        assert r.status_code == status, r.text
        if status == 422:
            assert r.json()["error"]["fields"][0]["path"] == "callback_url"


def test_production_with_webhooks_needs_a_named_secret(monkeypatch):
    from faithaudit.config import Settings

    base = {"environment": "production", "signing_secret": "x" * 40, "callback_hosts": ["hooks.example.com"]}
    for secret, problem in ((None, "is unset"), ("short", "is shorter than 32 bytes")):
        with pytest.raises(ValueError, match=f"FAITHAUDIT_CALLBACK_SECRET {problem}"):
            Settings(**base, callback_secret=secret)
    assert Settings(**base, callback_secret="k" * 40).callback_hosts == ["hooks.example.com"]
    assert Settings(**(base | {"callback_hosts": []})).callback_secret is None  # webhooks off: nothing needed
    monkeypatch.setenv("FAITHAUDIT_CALLBACK_SECRET", "")  # compose passes an empty value when it is not set
    assert Settings(**(base | {"callback_hosts": []})).callback_secret is None
