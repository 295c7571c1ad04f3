"""The CLI: bad input gives exit 2 and names the field, without a traceback; good input audits."""

import copy
import json
import os
import subprocess
import sys

import pytest
from cases import EXAMPLES, ROOT, load_example
from typer.testing import CliRunner

from faithaudit.api_schemas import AuditReport
from faithaudit.cli import app

BASE = load_example("fictional_fact.json")


def _with(mutate):
    body = copy.deepcopy(BASE)
    mutate(body)
    return body


BAD_INPUTS = {
    "unknown_method": (lambda b: b["audit"].update(methods=["leave_one_out", "telepathy"]), "audit.methods[1]"),
    "duplicate_ids": (lambda b: b["pipeline"]["documents"][1].update(id="d1"), "pipeline.documents"),
    "no_documents": (lambda b: b["pipeline"].update(documents=[]), "pipeline.documents"),
    "blank_text": (lambda b: b["pipeline"]["documents"][0].update(text="   "), "pipeline.documents[0].text"),
    "wrong_type": (lambda b: b["audit"].update(num_ablations="many"), "audit.num_ablations"),
    "unknown_field": (lambda b: b.update(temperature=0.3), "temperature"),
    "bad_kind": (lambda b: b["pipeline"].update(kind="graph"), "pipeline"),
    "template_without_context": (lambda b: b.update(prompt={"template": "{query}"}), "prompt.template"),
    "unknown_model": (lambda b: b.update(model={"name": "gpt-17"}), "model.name"),
    "over_context_window": (
        lambda b: [d.update(text="lorem ipsum dolor " * 1000) for d in b["pipeline"]["documents"]],
        "context window",
    ),
    "source_over_char_limit": (
        lambda b: b["pipeline"]["documents"][2].update(text="x" * 20_001),
        "pipeline.documents[2].text",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_exits_2_naming_the_field(tmp_path, name, model):
    mutate, field = BAD_INPUTS[name]
    case = tmp_path / "case.json"
    case.write_text(json.dumps(_with(mutate)))
    result = CliRunner().invoke(app, ["audit", str(case), "--json", "-"])
    assert result.exit_code == 2, result.output
    assert field in result.output, result.output
    assert "Traceback" not in result.output
    assert not result.stdout.strip().startswith("{")


def test_unreadable_and_malformed_files_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for path in (bad, tmp_path / "missing.json"):
        result = CliRunner().invoke(app, ["audit", str(path)])
        assert result.exit_code == 2 and str(path) in result.output


LEAN_CONTROLS = {"placebos": 4, "orders": 2}  # the CLI's plumbing; the default controls run in the golden reports


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_cli_audits_every_example(tmp_path, example, model):
    out, page, case = tmp_path / "r.json", tmp_path / "r.html", tmp_path / example
    body = load_example(example)
    body["audit"] = {**body.get("audit", {}), **LEAN_CONTROLS}
    case.write_text(json.dumps(body))
    result = CliRunner().invoke(app, ["audit", str(case), "--json", str(out), "--html", str(page)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["schema_version"] == "2" and report["sources"] and report["controls"]["request_sha256"]
    assert all(s["label"] for s in report["sources"])
    assert 'id="reliance-chart"' in page.read_text()


def _audit_in_subprocess(case) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    proc = subprocess.run(
        [sys.executable, "-m", "faithaudit.cli", "audit", str(case), "--json", "-"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout)


def test_same_request_gives_byte_identical_reports_in_two_processes(tmp_path):
    case = tmp_path / "case.json"
    lean = {"num_ablations": 8, "answer_flip_top_k": 1, **LEAN_CONTROLS}
    case.write_text(json.dumps(_with(lambda b: b["audit"].update(**lean))))
    first, second = _audit_in_subprocess(case), _audit_in_subprocess(case)
    first, second = (AuditReport.model_validate(r).without_timings() for r in (first, second))
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["sources"][1]["reliance_rank"] == 1


def test_version_flags_fail_on_gate_and_plain_progress(tmp_path, model):
    from faithaudit import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"faithaudit {__version__}"
    body = copy.deepcopy(BASE)
    body["audit"] = {"placebos": 0, "orders": 1, "answer_flip_top_k": 0}
    body["thresholds"] = {"min_context_reliance": 1000.0}  # cannot pass
    case = tmp_path / "case.json"
    case.write_text(json.dumps(body))
    out = tmp_path / "r.json"
    args = ["audit", str(case), "--json", str(out), "--methods", "leave_one_out,no_context", "--seed", "7"]
    result = CliRunner().invoke(app, [*args, "--fail-on-gate"])
    assert result.exit_code == 1, result.output
    report = AuditReport.model_validate_json(out.read_text())
    assert report.methods == ["leave_one_out", "no_context"] and report.controls.seed == 7
    assert "progress" in result.stderr and "leave_one_out" in result.stderr  # plain lines: stderr is no terminal
    assert "Loading weights" not in result.stderr
    body["thresholds"] = {"max_attended_not_relied": 0}  # attention was not measured: not evaluated
    case.write_text(json.dumps(body))
    assert CliRunner().invoke(app, [*args, "--fail-on-gate"]).exit_code == 3
    assert CliRunner().invoke(app, [*args, "--num-ablations", "2", "--methods", "context_ablation"]).exit_code == 2


def test_render_rewrites_a_saved_report_as_a_page(tmp_path):
    saved = ROOT / "tests" / "data" / "golden" / "rag.json"
    page = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["render", str(saved), "--html", str(page), "--title", "Release <7>"])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "<title>Release &lt;7&gt;</title>" in html and 'id="verdict"' in html
    assert html.count('<circle class="point"') == len(json.loads(saved.read_text())["sources"])
    not_a_report = tmp_path / "bad.json"
    not_a_report.write_text(json.dumps({"query": "q"}))
    for path, expected in ((not_a_report, "not a faithaudit report: response"), (tmp_path / "nope.json", "nope.json")):
        result = CliRunner().invoke(app, ["render", str(path), "--html", str(page)])
        assert result.exit_code == 2 and expected in result.output, result.output
