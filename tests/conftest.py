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


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's chromium + chromium-driver). Skipped where they are missing, unless
    FAITHAUDIT_REQUIRE_BROWSER=1 (``.ci/run`` sets it): then a missing browser fails the run."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        message = "Debian chromium + chromium-driver not installed (make test installs them)"
        if os.environ.get("FAITHAUDIT_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; FAITHAUDIT_REQUIRE_BROWSER=1 requires them")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,2200",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()
