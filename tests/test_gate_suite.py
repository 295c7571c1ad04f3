"""`faithaudit gate`: suites, threshold precedence, verdicts, JUnit XML and exit codes (real model in-process)."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest
from cases import load_example
from service_harness import free_port
from typer.testing import CliRunner

from faithaudit.cli import app

LEAN = {"methods": ["leave_one_out", "no_context"], "answer_flip_top_k": 0, "placebos": 0, "orders": 1}


def _case_file(tmp_path, name: str, **thresholds) -> str:
    body = load_example("fictional_fact.json") | {"audit": LEAN}
    body.pop("thresholds")
    if thresholds:
        body["thresholds"] = thresholds
    (tmp_path / "cases").mkdir(exist_ok=True)
    (tmp_path / "cases" / name).write_text(json.dumps(body))
    return f"cases/{name}"


def test_one_passing_and_one_failing_case_exit_1_with_one_junit_failure(tmp_path, model):
    import yaml

    inline = load_example("fictional_fact.json") | {"audit": LEAN}
    inline.pop("thresholds")
    suite = {
        "name": "release",
        "thresholds": {"min_context_reliance": 1.0, "min_faithfulness_score": 0.0},
        "cases": [
            _case_file(tmp_path, "grounded.json", min_context_reliance=0.5),  # a bare path: file beats suite
            {"name": "impossible", "request": inline, "thresholds": {"min_context_reliance": 1000}},
        ],
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    junit, verdict_json = tmp_path / "out" / "junit.xml", tmp_path / "out" / "verdict.json"
    result = CliRunner().invoke(
        app, ["gate", str(tmp_path / "suite.yaml"), "--junit", str(junit), "--json", str(verdict_json)]
    )
    assert result.exit_code == 1, result.output
    assert "gate FAILED (release): 1 of 2 case(s) failed a threshold" in result.output

    verdict = json.loads(verdict_json.read_text())
    grounded, impossible = verdict["cases"]
    assert verdict["status"] == "failed" and not verdict["passed"]
    assert grounded["name"] == "grounded" and grounded["status"] == "passed"
    # precedence: suite < request file < case override; the suite's deprecated min_faithfulness_score arrives
    # as its new name, min_context_token_share
    assert grounded["thresholds"] == {"min_context_reliance": 0.5, "min_context_token_share": 0.0}
    assert impossible["thresholds"]["min_context_reliance"] == 1000
    assert grounded["measured"]["context_reliance"] > 1.0

    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["grounded", "impossible"]
    failures = root.findall(".//failure")
    assert len(failures) == 1 and root.find("testsuite").get("failures") == "1"
    message = failures[0].get("message")
    assert message.startswith("min_context_reliance: limit 1000, measured ")
    assert float(message.rsplit(" ", 1)[1]) == pytest.approx(impossible["measured"]["context_reliance"], rel=1e-3)


@pytest.mark.parametrize(
    ("suite", "expected"),
    [
        ({"cases": ["cases/bare.json"]}, ["case 'bare' (cases[0])", "cases[0].thresholds", "no threshold"]),
        ({"thresholds": {"min_context_reliance": 1}, "cases": ["cases/missing.json"]}, ["cases[0].path", "missing"]),
        ({"thresholds": {"min_context_reliance": "high"}, "cases": ["cases/bare.json"]}, ["thresholds.min_context"]),
        ({"thresholds": {"min_context_reliance": 1}, "cases": [{"name": "x"}]}, ["cases[0]", "exactly one of"]),
        ({"thresholds": {"min_context_reliance": 1}, "cases": [], "extra": 1}, ["cases", "extra"]),
    ],
    ids=["no_threshold", "missing_file", "wrong_type", "no_request", "unknown_field"],
)
def test_a_bad_suite_exits_2_naming_the_case_and_field(tmp_path, suite, expected):
    _case_file(tmp_path, "bare.json")
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    result = CliRunner().invoke(app, ["gate", str(tmp_path / "suite.json")])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "bad suite" in flat and all(e in flat for e in expected), flat


def test_an_unreachable_server_exits_3(tmp_path):
    case = _case_file(tmp_path, "ok.json", min_context_reliance=1.0)
    (tmp_path / "suite.yaml").write_text(f"cases:\n  - {case}\n")
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(app, ["gate", str(tmp_path / "suite.yaml"), "--server", server, "--api-key", "k"])
    assert result.exit_code == 3, result.output
    assert "could not evaluate" in result.output and "ConnectError" in result.output
