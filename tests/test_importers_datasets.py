"""RAGAS samples and DeepEval test cases as audit requests, and gate suites that list such a file: every row
becomes a case, and the whole suite (files, rows, corpora) is checked before any audit runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cases import ROOT
from typer.testing import CliRunner

from faithaudit.api_schemas import AuditRequest, GateSuite
from faithaudit.cli import app
from faithaudit.errors import InvalidRequestError
from faithaudit.gating.suite import check_corpora, resolve_cases
from faithaudit.importers.datasets import dataset_requests
from faithaudit.importers.validate import checked_request

IMPORTS = ROOT / "examples" / "imports"


def _rows(path: Path) -> list:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else [json.loads(x) for x in text.splitlines() if x.strip()]


def test_ragas_samples_become_rag_requests():
    rows = dataset_requests(_rows(IMPORTS / "ragas_samples.jsonl"), "ragas", name="ragas_samples")
    requests = [checked_request(body, where=name) for name, body in rows]
    assert [name for name, _ in rows] == ["ragas_samples[0]", "ragas_samples[1]"]
    first = requests[0]
    assert first.pipeline.kind == "rag" and [d.id for d in first.pipeline.documents] == ["c1", "c2"]
    assert first.response == "The capital of Vellmora is Tarsquin."
    assert first.metadata == {"source_system": "ragas", "row": 0, "reference": "Tarsquin"}
    assert first.tags == ["source:ragas"]


def test_deepeval_cases_become_agent_or_rag_requests():
    rows = dataset_requests(_rows(IMPORTS / "deepeval_cases.json"), "deepeval")
    tools, rag = (checked_request(body, where=name) for name, body in rows)
    assert tools.pipeline.kind == "agent"
    steps = tools.pipeline.trace(query=tools.query).steps
    assert [(s.id, s.tool) for s in steps] == [("retrieval", "retrieval"), ("t1", "get_order")]
    assert json.loads(steps[1].output)["carrier"] == "sea freight"
    assert rag.pipeline.kind == "rag" and [d.id for d in rag.pipeline.documents] == ["r1", "r2"]


@pytest.mark.parametrize(
    ("fmt", "row", "expected"),
    [
        ("ragas", {"user_input": "q", "retrieved_contexts": "one string"}, "row[0].retrieved_contexts: must be a list"),
        ("ragas", {"user_input": [{"content": "hi", "type": "human"}]}, "row[0].user_input: a multi-turn sample"),
        ("ragas", {"retrieved_contexts": ["x"]}, "row[0].user_input: must be a non-empty string"),
        ("deepeval", {"input": "q"}, "row[0]: neither retrieval_context nor tools_called"),
        ("deepeval", {"input": "q", "tools_called": [{"output": "x"}]}, "row[0].tools_called[0]: a tool call needs"),
    ],
)
def test_bad_rows_name_the_row_and_the_field(fmt, row, expected):
    with pytest.raises(InvalidRequestError) as err:
        dataset_requests([row], fmt)
    assert expected in err.value.message


def test_cli_imports_each_format(tmp_path):
    out = tmp_path / "requests.jsonl"
    result = CliRunner().invoke(app, ["import", "ragas", str(IMPORTS / "ragas_samples.jsonl"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [AuditRequest.model_validate_json(x).query for x in out.read_text().splitlines()][
        1
    ] == "Who founded Tarsquin?"
    one = tmp_path / "one.json"
    result = CliRunner().invoke(app, ["import", "deepeval", str(IMPORTS / "deepeval_cases.json"), "--row", "1",
                                      "--out", str(one)])  # fmt: skip
    assert result.exit_code == 0 and AuditRequest.model_validate_json(one.read_text()).pipeline.kind == "rag"
    result = CliRunner().invoke(app, ["import", "deepeval", str(IMPORTS / "deepeval_cases.json"), "--row", "5"])
    assert result.exit_code == 2 and "--row 5: the file has 2 rows" in result.output
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = CliRunner().invoke(app, ["import", "ragas", str(binary)])
    assert result.exit_code == 2 and "not UTF-8" in " ".join(result.output.split())


def test_a_suite_lists_a_dataset_and_is_checked_before_anything_runs(tmp_path):
    suite = GateSuite.model_validate({"thresholds": {"min_context_reliance": 1.0},
                                      "cases": [{"dataset": "ragas_samples.jsonl", "format": "ragas"}]})  # fmt: skip
    cases = resolve_cases(suite, base_dir=IMPORTS)
    assert [c.name for c in cases] == ["ragas_samples[0]", "ragas_samples[1]"]
    assert all(c.request.thresholds.min_context_reliance == 1.0 for c in cases)
    with pytest.raises(InvalidRequestError, match="files are read by the CLI"):
        resolve_cases(suite, base_dir=None)  # the API takes inline requests only
    with pytest.raises(ValueError, match="`format`"):
        GateSuite.model_validate({"cases": [{"dataset": "x.jsonl"}]})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"user_input": "q", "retrieved_contexts": []}) + "\n")
    broken = GateSuite.model_validate({"thresholds": {"min_context_reliance": 1.0},
                                       "cases": [{"dataset": str(bad), "format": "ragas"}]})  # fmt: skip
    with pytest.raises(InvalidRequestError, match=r"cases\[0\].dataset.*retrieved_contexts: no retrieved contexts"):
        resolve_cases(broken, base_dir=tmp_path)


def test_a_missing_corpus_is_a_bad_suite_at_once(tmp_path):
    suite_file = tmp_path / "suite.yaml"
    retriever = {"query": "q?", "pipeline": {"kind": "retriever", "corpus": "nowhere", "k": 2}}
    suite_file.write_text(json.dumps({"thresholds": {"min_context_reliance": 1.0},
                                      "cases": [{"name": "r", "request": retriever}]}))  # fmt: skip
    result = CliRunner().invoke(app, ["gate", str(suite_file)])
    assert result.exit_code == 2 and "no corpus 'nowhere'" in " ".join(result.output.split())
    cases = resolve_cases(GateSuite.model_validate(json.loads(suite_file.read_text())), base_dir=tmp_path)
    check_corpora(cases, lambda name: name == "nowhere")  # exists: no error
