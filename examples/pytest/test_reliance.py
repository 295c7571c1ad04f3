"""Reliance assertions in a team's own test suite, with the faithaudit pytest plugin (installed with faithaudit).

    .venv/bin/pytest examples/pytest -q        # first run audits (about 10 s on 2 cores), later runs read the cache

The first test passes: the answer relies on d2, the paragraph that names the capital. The second fails on purpose,
to show the message: d1 (the Amazon rainforest) is not relied on.
"""

import pytest

from faithaudit.testing import assert_not_parametric, assert_relies_on, assert_thresholds

CASE = "examples/pytest/vellmora.json"  # relative to the rootdir (the repository)


@pytest.mark.faithaudit(case=CASE)
def test_answer_relies_on_the_capital_paragraph(faithaudit_report):
    assert_relies_on(faithaudit_report, ["d2"], min_nats=2)
    assert_not_parametric(faithaudit_report)
    assert_thresholds(faithaudit_report, {"min_context_reliance": 5.0})


@pytest.mark.faithaudit(case=CASE)
def test_fails_on_purpose_the_rainforest_paragraph_is_not_relied_on(faithaudit_report):
    assert_relies_on(faithaudit_report, ["d1"])
