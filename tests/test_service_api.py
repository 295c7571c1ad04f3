"""The HTTP API in-process (FastAPI TestClient) over a real SQLite store and the real Redis broker.

No worker runs here: audits that need a report get one from the real engine, stored through the lease API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from cases import ROOT, load_example
from inprocess import service_client

SMALL = load_example("fictional_fact.json") | {
    "audit": {"num_ablations": 4, "answer_flip_top_k": 0, "placebos": 0, "orders": 1}
}


@pytest.fixture()
def api(tmp_path):
    url = f"sqlite:///{tmp_path / 'fa.db'}"
    with service_client(url, signing_secret="test-secret", max_body_bytes=50_000, report_link_seconds=2) as (
        client,
        store,
    ):
        keys = {t: store.create_api_key(t)[0] for t in ("acme", "globex")}
        yield client, store, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_submit_returns_202_and_enqueues(api):
    client, store, keys = api
    r = client.post("/v1/audits", json=SMALL, headers=auth(keys["acme"]))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["links"]["self"] == f"/v1/audits/{body['id']}"
    got = client.get(f"/v1/audits/{body['id']}", headers={"X-API-Key": keys["acme"]}).json()
    assert got["status"] == "queued" and got["progress"] == {"fraction": 0.0, "stage": None}
    assert got["report"] is None and got["report_url"] is None
    assert client.app.state.relay.wait_idle()  # sent after the 202, by the relay thread
    after_grace = datetime.now(UTC) + timedelta(seconds=5)
    assert store.reap(stale_enqueue_seconds=3600, now=after_grace).ids == []  # it was enqueued: nothing to reap


def test_missing_or_wrong_key_is_401(api):
    client, _, _ = api
    for headers in ({}, auth("fa_wrong"), {"X-API-Key": "nope"}, {"Authorization": "Basic abc"}):
        for method, path in (("post", "/v1/audits"), ("get", "/v1/audits"), ("get", "/v1/audits/x")):
            r = getattr(client, method)(path, headers=headers, **({"json": SMALL} if method == "post" else {}))
            assert r.status_code == 401, (headers, path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"


def test_tenants_are_isolated(api, model):
    client, store, keys = api
    audit_id = _succeeded_audit(client, store, keys["acme"], model)
    other = auth(keys["globex"])
    assert client.get(f"/v1/audits/{audit_id}", headers=other).status_code == 404
    assert client.get(f"/v1/audits/{audit_id}/report.html", headers=other).status_code == 404
    assert client.delete(f"/v1/audits/{audit_id}", headers=other).status_code == 404
    assert client.get("/v1/audits", headers=other).json()["items"] == []
    mine = client.get("/v1/audits", headers=auth(keys["acme"])).json()["items"]
    assert [a["id"] for a in mine] == [audit_id]
    assert client.get(f"/v1/audits/{audit_id}", headers=auth(keys["acme"])).json()["status"] == "succeeded"


def test_validation_errors_are_422_with_field_paths(api):
    client, _, keys = api
    h = auth(keys["acme"])
    cases = {
        "pipeline.documents[0].text": {**SMALL, "pipeline": {"kind": "rag", "documents": [{"id": "a", "text": " "}]}},
        "audit.methods[0]": {**SMALL, "audit": {"methods": ["magic"]}},
        "model.name": {**SMALL, "model": {"name": "/etc/passwd"}},
        "pipeline.documents": {
            **SMALL,
            "pipeline": {"kind": "rag", "documents": [{"id": f"d{i}", "text": "x"} for i in range(201)]},
        },
        "query": {k: v for k, v in SMALL.items() if k != "query"},
        "extra": {**SMALL, "extra": 1},
        "audit.sampled_responses": {**SMALL, "audit": {"sampled_responses": 17}},
        "audit.sampling_temperature": {**SMALL, "audit": {"sampled_responses": 2, "sampling_temperature": 0}},
        "audit.paraphrases[1]": {**SMALL, "audit": {"paraphrases": ["Where is it?", "   "]}},
        "audit.paraphrases": {**SMALL, "audit": {"paraphrases": ["Where is it?"] * 9}},
    }
    for path, body in cases.items():
        r = client.post("/v1/audits", json=body, headers=h)
        assert r.status_code == 422, (path, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and any(f["path"] == path for f in err["fields"]), (path, err)
    r = client.post("/v1/audits", content=b"{not json", headers={**h, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "body"
    r = client.get("/v1/audits?limit=0", headers=h)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "query.limit"
    r = client.get("/v1/audits?cursor=garbage!", headers=h)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "cursor"


def test_body_over_limit_is_413(api):
    client, _, keys = api
    big = {**SMALL, "query": "x" * 60_000}
    r = client.post("/v1/audits", json=big, headers=auth(keys["acme"]))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_unknown_ids_are_404(api):
    client, _, keys = api
    h = auth(keys["acme"])
    for method, path in (
        ("get", "/v1/audits/nope"),
        ("delete", "/v1/audits/nope"),
        ("get", "/v1/audits/nope/report.html"),
        ("get", "/v1/nothing"),
    ):
        r = getattr(client, method)(path, headers=h)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)


def test_idempotency_key(api):
    client, store, keys = api
    h = {**auth(keys["acme"]), "Idempotency-Key": "deploy-42"}
    first = client.post("/v1/audits", json=SMALL, headers=h)
    again = client.post("/v1/audits", json=SMALL, headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    changed = client.post("/v1/audits", json={**SMALL, "query": "another question?"}, headers=h)
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "conflict"
    other_tenant = client.post(
        "/v1/audits", json=SMALL, headers={**auth(keys["globex"]), "Idempotency-Key": "deploy-42"}
    )
    assert other_tenant.status_code == 202 and other_tenant.json()["id"] != first.json()["id"]
    assert len(client.get("/v1/audits", headers=auth(keys["acme"])).json()["items"]) == 1


def test_report_html_signed_link_works_then_expires(api, model):
    client, store, keys = api
    audit_id = _succeeded_audit(client, store, keys["acme"], model)
    status = client.get(f"/v1/audits/{audit_id}", headers=auth(keys["acme"])).json()
    url = status["report_url"]
    assert url and "sig=" in url
    page = client.get(url)  # no header at all
    assert page.status_code == 200 and 'id="reliance-chart"' in page.text
    assert client.get(url.replace("sig=", "sig=0")).status_code == 403
    time.sleep(3.1)  # report_link_seconds=2
    assert client.get(url).status_code == 403
    assert client.get(f"/v1/audits/{audit_id}/report.html", headers=auth(keys["acme"])).status_code == 200


def test_report_html_is_409_before_success_and_delete_is_204(api):
    client, store, keys = api
    h = auth(keys["acme"])
    audit_id = client.post("/v1/audits", json=SMALL, headers=h).json()["id"]
    r = client.get(f"/v1/audits/{audit_id}/report.html", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert client.delete(f"/v1/audits/{audit_id}", headers=h).status_code == 204
    assert client.get(f"/v1/audits/{audit_id}", headers=h).status_code == 404
    assert store.get_audit(audit_id) is None  # request and report are gone from the store


def test_list_pagination_and_filters(api, model):
    client, store, keys = api
    h = auth(keys["acme"])
    ids = [client.post("/v1/audits", json={**SMALL, "query": f"q{i}?"}, headers=h).json()["id"] for i in range(5)]
    done = _succeeded_audit(client, store, keys["acme"], model)
    seen, cursor = [], None
    while True:
        page = client.get("/v1/audits", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=h).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [done] + ids[::-1]  # newest first
    assert [a["id"] for a in client.get("/v1/audits?status=succeeded", headers=h).json()["items"]] == [done]
    assert len(client.get("/v1/audits?status=queued", headers=h).json()["items"]) == 5
    gated = client.get("/v1/audits?gate_passed=true", headers=h).json()["items"]
    assert [a["id"] for a in gated] == [done] and gated[0]["gate_passed"] is True


def test_health_ready_metrics_openapi(api):
    client, _, keys = api
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "broker": True}
    from faithaudit import telemetry

    before = telemetry.SUBMITTED._value.get()
    client.post("/v1/audits", json=SMALL, headers=auth(keys["acme"]))
    text = client.get("/metrics").text
    assert 'faithaudit_audits{status="queued"} 1.0' in text
    assert f"faithaudit_audits_submitted_total {before + 1}" in text  # counted where it happened
    assert "faithaudit_audit_duration_seconds_bucket" in text and "faithaudit_queue_depth" in text
    assert "faithaudit_attempts_total" not in text  # no gauge named like a counter
    spec = client.get("/openapi.json").json()
    assert "/v1/audits" in spec["paths"] and "/v1/audits/{audit_id}/report.html" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_api_process_never_imports_torch():
    code = (
        "import sys; from faithaudit.service.app import create_app; from faithaudit.config import Settings;"
        "import faithaudit.cli; import faithaudit.service.token_budget;"
        "create_app(Settings(database_url='sqlite://'), run_reaper=False);"
        "import json, pathlib; from faithaudit.api_schemas import AuditRequest;"
        "r = AuditRequest.model_validate(json.load(open('examples/fictional_fact.json')));"
        "p = faithaudit.service.token_budget.planned_cost(r, model_name='m', cache_dir=pathlib.Path('/nonexistent'));"
        "assert p.forward_passes > 10 and p.tokens > 1000, p;"  # the plan's stage registry is built, torch-free
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False", out.stdout + out.stderr


def test_each_api_process_builds_its_app_from_the_serve_options(tmp_path, monkeypatch):
    """`serve --workers N` hands --no-auth and its public URL to each process in SERVE_OPTIONS_ENV; absent, keys
    are required and the settings' URL is kept. A process whose app cannot be built exits with uvicorn's start-up
    failure code, so `serve` stops (exit 1) instead of restarting it for ever."""
    from uvicorn.config import STARTUP_FAILURE

    from faithaudit.config import get_settings
    from faithaudit.service.app import SERVE_OPTIONS_ENV, ServeOptions, create_app_from_env

    options = ServeOptions(auth_enabled=False, public_url="http://10.0.0.5:8000")
    assert ServeOptions.from_env(options.to_env()) == options and ServeOptions.from_env({}) == ServeOptions()
    monkeypatch.setenv("FAITHAUDIT_DATABASE_URL", f"sqlite:///{tmp_path / 'fa.db'}")
    monkeypatch.setenv("FAITHAUDIT_SIGNING_SECRET", "test-secret")
    monkeypatch.setenv("FAITHAUDIT_PUBLIC_URL", "https://audits.example.com")
    monkeypatch.setenv(SERVE_OPTIONS_ENV, options.model_dump_json())
    get_settings.cache_clear()
    try:
        app = create_app_from_env()
        assert app.state.auth_enabled is False and app.state.settings.public_url == "http://10.0.0.5:8000"
        monkeypatch.delenv(SERVE_OPTIONS_ENV)
        app = create_app_from_env()
        assert app.state.auth_enabled is True and app.state.settings.public_url == "https://audits.example.com"
        # an app that cannot be built is uvicorn's start-up failure: its supervisor stops, never restarts for ever
        monkeypatch.delenv("FAITHAUDIT_SIGNING_SECRET")
        (tmp_path / "a-file").write_text("")
        monkeypatch.setenv("FAITHAUDIT_DATA_DIR", str(tmp_path / "a-file"))  # no signing secret can be kept
        get_settings.cache_clear()
        with pytest.raises(SystemExit) as stopped:
            create_app_from_env()
        assert stopped.value.code == STARTUP_FAILURE
    finally:
        get_settings.cache_clear()


def test_warm_up_never_stops_the_api(tmp_path, caplog):
    """`serve` warms each process up before it takes requests; a served model it cannot plan for is logged, and
    the API starts all the same."""
    from fastapi.testclient import TestClient

    from faithaudit.config import Settings
    from faithaudit.service.app import create_app

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'fa.db'}",
        data_dir=tmp_path,
        signing_secret="test-secret",
        served_models=["smollm2-135m-instruct", str(broken)],
    )
    app = create_app(settings, run_reaper=False, warm_up=True)
    with caplog.at_level("WARNING", logger="faithaudit.service.app"), TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and f"warm-up of model {broken} skipped" in messages[0], messages
    app.state.store.dispose()


def test_a_model_cached_after_start_up_is_loaded_off_the_request_path(tmp_path, model):
    """An API process that starts before any worker has cached its model checks prompts approximately; once the
    files appear, its watcher loads the tokenizer (no submit pays it) and the next submit is checked exactly."""
    from fastapi.testclient import TestClient

    from faithaudit.audits.model.registry import materialized_folder, resolve_model
    from faithaudit.config import Settings, get_settings
    from faithaudit.service import token_budget
    from faithaudit.service.app import create_app
    from faithaudit.store import Store

    name = "smollm2-135m-instruct"
    cached = materialized_folder(name, get_settings().cache_dir)  # the `model` fixture cached it
    cache = tmp_path / "cache"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'fa.db'}", data_dir=tmp_path, signing_secret="s", cache_dir=cache
    )
    store = Store.from_settings(settings)
    store.upgrade()
    app = create_app(settings, store=store, run_reaper=False, warm_up=True)
    with TestClient(app) as client:
        watcher = app.state.model_files
        assert watcher.pending == [name] and (name, cache) not in token_budget._LOADED
        (cache / "models").mkdir(parents=True)
        (cache / "models" / resolve_model(name).cache_key).symlink_to(cached)  # a worker has cached it
        deadline = time.monotonic() + 20
        while watcher.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.pending == [] and (name, cache) in token_budget._LOADED
        key = store.create_api_key("acme")[0]
        docs = [{"id": f"d{i}", "text": "1 2 3 4 5 6 7 8 9 " * 600} for i in range(4)]
        r = client.post("/v1/audits", json={**SMALL, "pipeline": {"kind": "rag", "documents": docs}}, headers=auth(key))
        assert r.status_code == 422 and "context window" in r.text, r.text  # checked with the tokenizer
    assert not watcher.is_alive()
    store.dispose()


def test_a_burst_that_finds_the_model_just_cached_loads_its_tokenizer_once(tmp_path, monkeypatch):
    """Bookkeeping: eight submits at once find the files; one loads the tokenizer, the others wait for it."""
    import threading

    from faithaudit.service import token_budget

    calls = []

    def slow_load(name, folder):
        calls.append(name)
        time.sleep(0.05)
        return object()

    monkeypatch.setattr(token_budget, "_load", slow_load)
    monkeypatch.setattr(token_budget, "materialized_folder", lambda name, cache_dir: tmp_path)
    got, start = [], threading.Barrier(8)

    def submit():
        start.wait()
        got.append(token_budget.counter_for("m", tmp_path))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["m"] and len(got) == 8 and len({id(c) for c in got}) == 1


def test_the_model_files_watcher_warms_each_model_once_its_files_are_there(caplog):
    """Bookkeeping: looked for again until warm() says the files were there; a model that cannot be used is
    logged and no longer looked for."""
    from faithaudit.service.model_files import ModelFilesWatcher

    answers = {"late": [False, False, True], "broken": [ValueError("config.json is not JSON")]}
    seen = []

    def warm(name):
        seen.append(name)
        answer = answers[name].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watcher = ModelFilesWatcher(["late", "broken"], warm, interval=0.01)
    with caplog.at_level("INFO", logger="faithaudit.service.model_files"):
        watcher.start()
        watcher.join(timeout=5)
    assert not watcher.is_alive() and watcher.pending == []
    assert seen == ["late", "broken", "late", "late"]
    assert any("broken" in r.getMessage() and "not JSON" in r.getMessage() for r in caplog.records)


def _succeeded_audit(client, store, key: str, model) -> str:
    """Submit over HTTP, then run the real engine under a lease, as a worker would."""
    from faithaudit.api_schemas import AuditRequest
    from faithaudit.audits.run import run_audit

    audit_id = client.post("/v1/audits", json=SMALL, headers=auth(key)).json()["id"]
    claim = store.claim(audit_id, "test-worker", lease_seconds=60, max_attempts=3)
    assert claim.claimed
    report = run_audit(AuditRequest.model_validate(claim.audit.request), model)
    assert store.finish(
        audit_id, "test-worker", report=json.loads(report.model_dump_json()), gate_passed=report.gate.passed
    )
    return audit_id


def test_prompt_over_the_context_window_is_422_at_submit(api, model):
    client, store, keys = api  # the `model` fixture guarantees the worker's model cache exists
    docs = [{"id": f"d{i}", "text": "1 2 3 4 5 6 7 8 9 " * 600} for i in range(4)]
    body = {**SMALL, "pipeline": {"kind": "rag", "documents": docs}}
    r = client.post("/v1/audits", json=body, headers=auth(keys["acme"]))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["fields"][0]["path"] == "pipeline.documents" and "context window" in err["fields"][0]["msg"]
    assert client.get("/v1/audits", headers=auth(keys["acme"])).json()["items"] == []  # nothing stored


def test_a_prompt_that_cannot_fit_its_placebos_is_422_at_submit(api, model):
    client, _, keys = api
    # two documents under the API's per-source limit (20,000 characters) that fit the window; a placebo as long
    # as one of them does not
    half = "The committee met again to review the long schedule of the coming season. " * 250
    docs = [{"id": "a", "text": half}, {"id": "b", "text": half}]
    audit = {**SMALL["audit"], "placebos": 16}
    body = {**SMALL, "pipeline": {"kind": "rag", "documents": docs}, "audit": audit}
    r = client.post("/v1/audits", json=body, headers=auth(keys["acme"]))
    assert r.status_code == 422, r.text
    field = r.json()["error"]["fields"][0]
    assert field["path"] == "audit.placebos" and "placebo" in field["msg"]
    lean = {**body, "audit": {**SMALL["audit"], "placebos": 0}}
    assert client.post("/v1/audits", json=lean, headers=auth(keys["acme"])).status_code == 202
    # a query paraphrase (stability) that no longer fits is a 422 naming it
    long_question = "Which of " + " ".join(str(i % 10) for i in range(990)) + "?"  # ~1,000 tokens
    wordy = {**lean, "audit": {**lean["audit"], "paraphrases": ["When did they meet?", long_question]}}
    r = client.post("/v1/audits", json=wordy, headers=auth(keys["acme"]))
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "audit.paraphrases[1]", r.text


def test_hostile_inputs_get_4xx_never_500(api, model):
    import base64

    client, store, keys = api
    h = auth(keys["acme"])
    audit_id = _succeeded_audit(client, store, keys["acme"], model)
    future = int(time.time()) + 60
    r = client.get(f"/v1/audits/{audit_id}/report.html", params={"expires": future, "sig": "é" * 64})
    assert r.status_code == 403
    for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        cursor = base64.urlsafe_b64encode(f"{when}|abc".encode()).decode()
        r = client.get("/v1/audits", params={"cursor": cursor}, headers=h)
        assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "cursor"
    for raw in (b"[" * 20_000 + b"]" * 20_000, b'{"audit": {"seed": ' + b"9" * 5000 + b"}}"):
        r = client.post("/v1/audits", content=raw, headers={**h, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "body", r.text
    r = client.post(
        "/v1/audits",
        content=json.dumps({**SMALL, "thresholds": {"min_context_reliance": float("nan")}}),
        headers={**h, "content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "thresholds.min_context_reliance"
    for bad_id in ("%00", "x" * 300, "DROP TABLE"):
        assert client.get(f"/v1/audits/{bad_id}", headers=h).status_code == 404
    many = {
        **SMALL,
        "audit": {"granularity": "sentence"},
        "pipeline": {"kind": "rag", "documents": [{"id": "d", "text": "Aa bb. " * 250}]},
    }
    r = client.post("/v1/audits", json=many, headers=h)
    assert r.status_code == 422 and "250 sentences" in r.json()["error"]["fields"][0]["msg"]


def test_agent_traces_are_validated_at_submit(api, model):
    """A good agent trace is accepted (its prompt counted by the torch-free tokenizer); bad ones are 422 naming
    the step; a trace that cannot be trimmed to its budget is 422 naming max_prompt_tokens."""
    client, _, keys = api
    h = auth(keys["acme"])
    case = load_example("agent_case.json")
    assert client.post("/v1/audits", json=case, headers=h).status_code == 202
    bad_tool = json.loads(json.dumps(case))
    bad_tool["pipeline"]["steps"][1]["tool"] = "stock_price"
    bad_args = json.loads(json.dumps(case))
    bad_args["pipeline"]["steps"][2]["arguments"] = {"expression": ["1", "2"]}
    orphan = {
        "query": "q",
        "pipeline": {"kind": "agent", "messages": [{"role": "tool", "tool_call_id": "c9", "content": "2"}]},
    }
    too_long = json.loads(json.dumps(case))
    too_long["pipeline"]["max_prompt_tokens"] = 100
    cases = {
        "pipeline.steps[1].tool": bad_tool,
        "pipeline.steps[2].arguments": bad_args,
        "pipeline.messages[0].tool_call_id": orphan,
        "pipeline.max_prompt_tokens": too_long,
    }
    for path, body in cases.items():
        r = client.post("/v1/audits", json=body, headers=h)
        assert r.status_code == 422, (path, r.text)
        assert any(f["path"] == path for f in r.json()["error"]["fields"]), (path, r.text)
