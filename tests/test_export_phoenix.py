"""An imported trace's audit written back: Phoenix span and document annotations (checked against the request
models of Phoenix's published client, arize-phoenix-client, extra keys refused) and OpenTelemetry
gen_ai.evaluation.result events, through the CLI, and posted to a local receiver standing in for a Phoenix URL."""

from __future__ import annotations

import json
import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from otel_traces import rag_trace
from typer.testing import CliRunner

from faithaudit.cli import app
from faithaudit.exporters.phoenix import export_bundle
from faithaudit.importers.trace_request import otlp_request
from faithaudit.importers.validate import checked_request

phoenix = pytest.importorskip("phoenix.client.__generated__.v1", reason="arize-phoenix-client (dev extra)")


def strict(value, schema, path: str = "body") -> None:
    """``value`` matches Phoenix's TypedDict ``schema`` (typing.TypedDict, which pydantic cannot read on Python
    3.11): required keys present, no key Phoenix does not know, Literal values allowed, scalar types right."""
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin in (typing.NotRequired, typing.Required):
        return strict(value, args[0], path)
    if typing.is_typeddict(schema):
        assert isinstance(value, dict), f"{path}: not an object"
        hints = typing.get_type_hints(schema, include_extras=True)
        assert set(value) <= set(hints), f"{path}: keys Phoenix does not know: {set(value) - set(hints)}"
        optional = {k for k, h in hints.items() if typing.get_origin(h) is typing.NotRequired}
        missing = set(hints) - optional - set(value)
        assert not missing, f"{path}: missing {missing}"
        for key, sub in value.items():
            strict(sub, hints[key], f"{path}.{key}")
    elif origin is typing.Literal:
        assert value in args, f"{path}: {value!r} not in {args}"
    elif origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        errors = []
        for option in args:
            try:
                return strict(value, option, path)
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError("; ".join(errors))
    elif origin is not None and issubclass(origin, typing.Mapping):
        assert isinstance(value, dict), f"{path}: not an object"
    elif origin is not None and issubclass(origin, typing.Sequence):
        assert isinstance(value, list), f"{path}: not a list"
        for i, item in enumerate(value):
            strict(item, args[0], f"{path}[{i}]")
    elif schema is float:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: not a number"
    elif schema in (int, str):
        assert isinstance(value, schema) and not isinstance(value, bool), f"{path}: not {schema.__name__}"
    elif schema is type(None):
        assert value is None, f"{path}: not null"


@pytest.fixture(scope="module")
def audited(model):
    from faithaudit.audits.run import audit_request

    trace = rag_trace()
    body = otlp_request(trace)
    body["audit"] = {"methods": ["attention", "leave_one_out", "no_context"], "placebos": 4, "orders": 2,
                     "answer_flip_top_k": 0}  # fmt: skip
    return trace, audit_request(checked_request(body, where="test"), model)


def test_bundle_matches_phoenix_models_and_the_trace(audited):
    trace, report = audited
    bundle = export_bundle(report, time_unix_nano=1, audit_id="a" * 32)
    strict(bundle["span_annotations"], phoenix.AnnotateSpansRequestBody)
    strict(bundle["document_annotations"], phoenix.AnnotateSpanDocumentsRequestBody)
    retriever = next(s for s in trace["resourceSpans"][0]["scopeSpans"][0]["spans"] if s["name"] == "Atlas")
    docs = bundle["document_annotations"]["data"]
    import base64

    assert {d["span_id"] for d in docs} == {base64.b64decode(retriever["spanId"]).hex()}
    assert [d["document_position"] for d in docs] == [0, 1]
    assert [d["result"]["score"] for d in docs] == [s.reliance for s in report.sources]
    assert docs[0]["result"]["label"] == report.sources[0].label and docs[0]["metadata"]["unit"] == "nats"
    spans = {a["name"]: a for a in bundle["span_annotations"]["data"]}
    assert spans["faithaudit.context_reliance"]["span_id"] == report.metadata["span_id"]
    assert spans["faithaudit.context_reliance"]["result"]["explanation"].startswith("The answer relies on d1")
    assert spans["faithaudit.gate"]["result"]["label"] == "passed"
    events = bundle["otlp_logs"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert len(events) == len(docs) + len(spans)
    assert {e["eventName"] for e in events} == {"gen_ai.evaluation.result"}
    first = {a["key"]: a["value"] for a in events[0]["attributes"]}
    assert first["gen_ai.evaluation.name"] == {"stringValue": "faithaudit.context_reliance"}


class _Receiver(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - the http.server hook
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        schema = {"/v1/span_annotations": phoenix.AnnotateSpansRequestBody,
                  "/v1/document_annotations": phoenix.AnnotateSpanDocumentsRequestBody}[self.path]  # fmt: skip
        try:
            strict(body, schema)
            status = 202
        except Exception:  # noqa: BLE001 - any mismatch is a 422 from this stand-in
            status = 422
        self.seen.append((self.path, status, self.headers.get("Authorization")))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_cli_writes_and_posts_the_annotations(audited, tmp_path, monkeypatch):
    _, report = audited
    saved = tmp_path / "report.json"
    saved.write_text(report.model_dump_json())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PHOENIX_API_KEY", "px-key")
    try:
        out = tmp_path / "annotations.json"
        url = f"http://127.0.0.1:{server.server_port}"
        result = CliRunner().invoke(app, ["export", "phoenix", str(saved), "--out", str(out), "--phoenix-url", url])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert "3 span and 2 document annotations" in result.output
    assert sorted(_Receiver.seen) == [("/v1/document_annotations", 202, "Bearer px-key"),
                                      ("/v1/span_annotations", 202, "Bearer px-key")]  # fmt: skip
    assert json.loads(out.read_text())["document_annotations"]["data"][0]["name"] == "faithaudit.reliance"


def test_the_model_check_can_fail():
    good = {"name": "x", "annotator_kind": "CODE", "span_id": "ab", "result": {"score": 1.0}}
    strict({"data": [good]}, phoenix.AnnotateSpansRequestBody)
    for bad in ({**good, "annotator_kind": "ROBOT"}, {**good, "colour": "red"}, {"name": "x", "span_id": "ab"},
                {**good, "result": {"score": "high"}}):  # fmt: skip
        with pytest.raises(AssertionError):
            strict({"data": [bad]}, phoenix.AnnotateSpansRequestBody)


def test_a_report_without_trace_ids_is_refused():
    from cases import ROOT

    result = CliRunner().invoke(app, ["export", "phoenix", str(ROOT / "tests/data/golden/rag.json"), "--out", "x"])
    assert result.exit_code == 2 and "export works on audits of imported traces" in " ".join(result.output.split())
