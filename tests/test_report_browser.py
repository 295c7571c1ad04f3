"""The HTML report renders in headless Chromium: one point per source on the scatter, a heatmap token per response
token, and the chart really paints pixels."""

from __future__ import annotations

import io

import numpy as np

from faithaudit.pages.report import render_report_html


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
    assert len(chart.find_elements(By.CSS_SELECTOR, "circle.point")) == len(docs)
    for source in ("d1", "d2", "d3", "d4"):
        marks = chart.find_elements(By.CSS_SELECTOR, f'[data-source="{source}"]')
        assert sorted(m.tag_name for m in marks) == ["circle", "path", "text"]  # point, interval, label
    assert chart.size["width"] > 200 and chart.size["height"] > 50
    tokens = browser.find_elements(By.CSS_SELECTOR, "#response-heatmap span.token")
    assert len(tokens) == len(report.token_scores) == report.summary.response_tokens
    assert "".join(t.get_attribute("textContent") for t in tokens) == report.response
    assert browser.find_element(By.CSS_SELECTOR, "#verdict .reading").text.startswith("The answer relies on d2")

    pixels = np.asarray(Image.open(io.BytesIO(chart.screenshot_as_png)).convert("RGB"), dtype=np.int16)
    background = pixels[1, 1]
    painted = int((np.abs(pixels - background).max(axis=-1) > 40).sum())  # pixels far from the background colour
    assert painted > 0.01 * pixels.shape[0] * pixels.shape[1], painted
    assert "Tarsquin" in browser.find_element(By.TAG_NAME, "body").text
