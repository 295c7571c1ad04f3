"""Shared fixtures: the real default model, loaded once per test process, and the golden reports, audited once
per session and shared by the tests that only read a report. Test data lives in ``cases.py``."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model():
    from faithaudit.audits.model.registry import load_model
    from faithaudit.config import get_settings

    return load_model(None, get_settings())


@pytest.fixture(scope="session")
def golden_reports(model):
    """The reports of the golden RAG and agent cases (``cases.golden_request``), audited once per session."""
    from cases import GOLDEN_CASES, golden_request

    from faithaudit.audits.run import audit_request
    from faithaudit.tools import registry_for

    return {name: audit_request(golden_request(name), model, tools=registry_for) for name in GOLDEN_CASES}
