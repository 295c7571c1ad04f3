"""The pytest plugin, run by pytester as a team would run it: a marked test and a fixture audit a case on the
real model, failures name the figure and the limit, reports are cached across sessions, and the GitHub job
summary lists the audits."""

from __future__ import annotations

import json

import pytest
from cases import load_example

pytest_plugins = ["pytester"]

TESTS = """
import pytest
from faithaudit.testing import assert_not_parametric, assert_relies_on, assert_thresholds

@pytest.mark.faithaudit(case="case.json")
def test_relies_on_the_answer_paragraph(faithaudit_report):
    assert_relies_on(faithaudit_report, ["d2"], min_nats=2)
    assert_not_parametric(faithaudit_report)

@pytest.mark.faithaudit(case="case.json")
def test_relies_on_the_rainforest_paragraph(faithaudit_report):
    assert_relies_on(faithaudit_report, ["d1"])

def test_thresholds(faithaudit):
    assert_thresholds(faithaudit.audit("case.json"), {"min_context_reliance": 100.0})
"""


@pytest.fixture()
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, model):
    """``model``: torch and numpy are imported out here first, so pytester's in-process runs (which restore
    ``sys.modules`` after each run) never import a C extension twice."""
    from faithaudit.audits import run  # noqa: F401 - the engine's modules, for the same reason

    case = load_example("fictional_fact.json")
    case["audit"] = {"methods": ["leave_one_out", "no_context"], "placebos": 4, "orders": 2, "answer_flip_top_k": 0}
    pytester.makefile(".json", case=json.dumps(case))
    pytester.makepyfile(test_rag=TESTS)
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return pytester, summary


def test_plugin_audits_fails_with_reasons_and_caches(project):
    pytester, summary = project
    first = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    first.assert_outcomes(passed=1, failed=2)
    text = first.stdout.str()
    assert "the answer does not rely on what it should (noise floor" in text
    assert (
        "d1: label '" in text and "is not one of ['decisive', 'supporting', 'relied_not_attended']: reliance -" in text
    )
    assert "min_context_reliance: context_reliance" in text and "(limit 100)" in text
    cached = list((pytester.path / ".faithaudit_cache").glob("*.json"))
    assert len(cached) == 1  # one request, audited once for three tests
    table = summary.read_text()
    assert table.count("| `") == 3 and table.count("| no |") == 1 and table.count("| yes |") == 2
    assert "| d2 |" in table

    summary.unlink()
    again = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    again.assert_outcomes(passed=1, failed=2)
    assert summary.read_text().count("| yes |") == 3  # every report from the cache: no audit ran


def test_marker_is_required_for_the_report_fixture(pytester: pytest.Pytester):
    pytester.makepyfile("def test_x(faithaudit_report):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert "faithaudit_report needs @pytest.mark.faithaudit" in result.stdout.str() + result.stderr.str()
