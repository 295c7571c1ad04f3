"""The reviewers' UI in headless Chromium against a real server (uvicorn, SQLite store, Redis queue): sign in,
filter, open a report, compare two real audits of the same case, follow a tag's trend, sign out. Every page is
screenshotted and must paint; every URL on every page stays on the server; HTML in user text stays text."""

from __future__ import annotations

import io
import threading
import time
from urllib.parse import urljoin, urlparse

import numpy as np
import pytest
from cases import golden_request
from inprocess import seed_audit, service_app

EVIL = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def second_audit(model):
    """The golden RAG case again with fewer controls: a real second audit of the same case, cheap to run."""
    from faithaudit.api_schemas import AuditRequest
    from faithaudit.audits.run import audit_request

    body = golden_request("rag").model_dump(mode="json")
    body["audit"] |= {"methods": ["attention", "leave_one_out", "no_context"], "placebos": 4, "orders": 1,
                      "answer_flip_top_k": 0}  # fmt: skip
    return audit_request(AuditRequest.model_validate(body), model)


@pytest.fixture(scope="module")
def server(tmp_path_factory, golden_reports, second_audit):
    import uvicorn
    from service_harness import free_port

    folder = tmp_path_factory.mktemp("ui")
    app, store, enqueuer = service_app(f"sqlite:///{folder / 'fa.db'}", folder, signing_secret="s" * 40)
    keys = {t: store.create_api_key(t)[0] for t in ("acme", "globex")}
    rag = golden_reports["rag"]
    evil = rag.model_copy(update={"query": EVIL, "metadata": {"note": EVIL}})
    ids = {
        "first": seed_audit(store, "acme", rag, tags=["release-7"]),
        "second": seed_audit(store, "acme", second_audit, tags=["release-7"]),
        "evil": seed_audit(store, "acme", evil, tags=["xss"], query=EVIL),
        "other": seed_audit(store, "globex", rag, tags=["release-7"]),
    }
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", keys, ids
    uv.should_exit = True
    thread.join(10)
    enqueuer.purge()
    store.dispose()


def _painted(element) -> float:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"), dtype=np.int16)
    return float((np.abs(pixels - pixels[1, 1]).max(axis=-1) > 40).mean())


def _check_page(browser, base: str, shots, name: str) -> None:
    """Nothing leaves the server, no script runs, and the page paints something."""
    from selenium.webdriver.common.by import By

    host = urlparse(base).netloc
    for el in browser.find_elements(By.XPATH, "//*[@href or @src or @action or @formaction]"):
        for attr in ("href", "src", "action", "formaction"):
            value = el.get_dom_attribute(attr)
            if value is not None:
                url = urljoin(browser.current_url, value)
                assert urlparse(url).netloc == host, (name, el.tag_name, value)
    assert browser.find_elements(By.TAG_NAME, "script") == [] and browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.title != "owned"
    body = browser.find_element(By.TAG_NAME, "body")
    browser.save_screenshot(str(shots / f"{name}.png"))
    assert _painted(body) > 0.01, name


def _follow(browser, element) -> None:
    """Click and wait for the next page to replace this one, and to finish loading. While Chromium swaps the
    documents, asking about the old one can fail in more ways than "stale": any failure means it is gone."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    element.click()

    def replaced(driver) -> bool:
        try:
            page.is_enabled()
        except WebDriverException:  # StaleElementReference, or "Node ... does not belong to the document"
            return True
        return False

    wait = WebDriverWait(browser, 15)
    wait.until(replaced)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_review_flow_in_chromium(browser, server, golden_reports, tmp_path):
    from selenium.webdriver.common.by import By

    base, keys, ids = server
    shots = tmp_path
    browser.delete_all_cookies()
    browser.get(base + "/ui/audits")
    assert urlparse(browser.current_url).path == "/ui/login"  # no session: sign in first
    browser.find_element(By.ID, "api_key").send_keys("fa_wrong")
    _follow(browser, browser.find_element(By.ID, "sign-in"))
    assert "invalid or revoked API key" in browser.find_element(By.ID, "login-error").text
    _check_page(browser, base, shots, "login")
    browser.find_element(By.ID, "api_key").send_keys(keys["acme"])
    _follow(browser, browser.find_element(By.ID, "sign-in"))

    rows = browser.find_elements(By.CSS_SELECTOR, "#audits-table tbody tr[data-audit]")
    assert [r.get_attribute("data-audit") for r in rows] == [ids["evil"], ids["second"], ids["first"]]
    assert EVIL in browser.find_element(By.ID, "audits-table").text  # the query, as text
    _check_page(browser, base, shots, "audits")

    browser.find_element(By.ID, "f-tag").send_keys("release-7")
    _follow(browser, browser.find_element(By.ID, "apply-filters"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#audits-table tbody tr[data-audit]")
    assert [r.get_attribute("data-audit") for r in rows] == [ids["second"], ids["first"]]

    for row in rows:
        row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    _follow(browser, browser.find_element(By.ID, "compare-selected"))
    sources = browser.find_elements(By.CSS_SELECTOR, "#compare-sources tbody tr[data-source]")
    assert [s.get_attribute("data-source") for s in sources] == ["d1", "d2", "d3", "d4"]
    assert all(s.find_element(By.CSS_SELECTOR, "td.delta").text not in ("", "—") for s in sources)
    _check_page(browser, base, shots, "compare")

    _follow(browser, browser.find_element(By.LINK_TEXT, ids["first"][:8]))
    chart = browser.find_element(By.ID, "reliance-chart")
    points = chart.find_elements(By.CSS_SELECTOR, "circle.point")
    assert sorted(p.get_attribute("data-source") for p in points) == ["d1", "d2", "d3", "d4"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#response-heatmap span.token")) == len(
        golden_reports["rag"].token_scores
    )
    _check_page(browser, base, shots, "report")

    _follow(browser, browser.find_element(By.LINK_TEXT, "trend of release-7"))
    marks = browser.find_elements(By.CSS_SELECTOR, "#trend-chart circle.trend-point")
    assert sorted(m.get_attribute("data-audit") for m in marks) == sorted([ids["first"], ids["second"]])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#trend-days tbody tr")) == 1
    _check_page(browser, base, shots, "trends")

    browser.get(f"{base}/ui/audits/{ids['evil']}")
    assert EVIL in browser.find_element(By.TAG_NAME, "body").text
    _check_page(browser, base, shots, "report-with-html-in-text")

    browser.get(f"{base}/ui/audits/{ids['other']}")  # another tenant's audit: not found, as in the API
    assert "Error 404" in browser.find_element(By.TAG_NAME, "h1").text
    browser.get(f"{base}/ui/audits?since=last-week")
    assert "since" in browser.find_element(By.ID, "error-message").text
    _check_page(browser, base, shots, "error")

    browser.get(base + "/ui/audits")
    _follow(browser, browser.find_element(By.ID, "logout"))
    assert urlparse(browser.current_url).path == "/ui/login"
    browser.get(base + "/ui/audits")
    assert urlparse(browser.current_url).path == "/ui/login"
