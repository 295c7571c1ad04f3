"""The HTML report renders in headless Chromium: 2 bars per source, and the chart really paints pixels."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from faithaudit.service.html_report import render_report_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium + chromium-driver not installed (make test installs them)"
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
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
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_report_chart_renders_in_chromium(browser, golden_reports, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    report = golden_reports["rag"]  # examples/fictional_fact.json, audited once per session
    docs = report.sources
    page = tmp_path / "report.html"
    page.write_text(render_report_html(report))
    browser.get(page.as_uri())

    chart = browser.find_element(By.ID, "reliance-chart")
    assert chart.tag_name == "svg"
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar")) == 2 * len(docs)
    for source in ("d1", "d2", "d3", "d4"):
        bars = chart.find_elements(By.CSS_SELECTOR, f'rect.bar[data-source="{source}"]')
        assert sorted(b.get_attribute("class") for b in bars) == ["bar attention", "bar reliance"]
    assert chart.size["width"] > 200 and chart.size["height"] > 50

    pixels = np.asarray(Image.open(io.BytesIO(chart.screenshot_as_png)).convert("RGB"), dtype=np.int16)
    background = pixels[1, 1]
    painted = int((np.abs(pixels - background).max(axis=-1) > 40).sum())  # pixels far from the background colour
    assert painted > 0.01 * pixels.shape[0] * pixels.shape[1], painted
    assert "Tarsquin" in browser.find_element(By.TAG_NAME, "body").text
