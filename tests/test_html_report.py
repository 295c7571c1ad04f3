"""The HTML report: one offline page, user text escaped, two chart bars per source."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from faithaudit.api_schemas import (
    AuditReport,
    Cost,
    GateFailure,
    GateResult,
    ModelInfo,
    SourceReport,
    Summary,
)
from faithaudit.service.html_report import render_report_html

EVIL_ID = 'doc<script>alert("x")</script>'


def _source(sid: str, text: str, **kw) -> SourceReport:
    return SourceReport(
        id=sid, kind="document", document_id=sid, text=text, text_preview=text[:20], token_span=(0, 5), **kw
    )


def make_report() -> AuditReport:
    sources = [
        _source(
            "d0",
            "Paris is the capital of France.",
            attention=0.6,
            reliance=2.5,
            reliance_interval=(2.1, 3.0),
            surrogate_weight=2.1,
            answer_changed=True,
            answer_without="I am not sure.",
            cited=True,
            label="decisive",
            label_reason="reliance +2.50 nats, interval [+2.10, +3.00], noise floor 0.40: above",
        ),
        _source("d1", "Lyon is a city & <b>not</b> a capital.", attention=None, reliance=None, label=None),
        _source(
            EVIL_ID,
            "Berlin is in Germany.",
            attention=0.4,
            reliance=-0.75,
            reliance_interval=(-1.0, -0.5),
            surrogate_weight=-0.5,
            answer_changed=False,
            label="distracting",
        ),
    ]
    return AuditReport(
        query="What is the capital of France? <i>",
        response="Paris & nothing else",
        response_origin="generated",
        prompt_template="{context}\n{query}",
        granularity="document",
        methods=["attention", "loo"],
        model=ModelInfo(
            name="tiny-llm",
            revision="abc123",
            context_window=2048,
            is_proxy=True,
            proxy_for="gpt-prod",
            note="Local stand-in; numbers describe tiny-llm only.",
        ),
        sources=sources,
        summary=Summary(
            num_sources=3,
            response_tokens=4,
            logprob_full=-1.2,
            logprob_no_context=-6.0,
            context_reliance=4.8,
            parametric=False,
            context_token_share=0.7,
            noise_floor_nats=0.4,
            placebo_reliance=[0.1, -0.4, 0.2],
            citation_precision=1.0,
            citation_recall=None,
            flags=["attention_disagrees_with_reliance", "flag <&>"],
        ),
        gate=GateResult(
            passed=False,
            failures=[
                GateFailure(
                    threshold="min_context_token_share",
                    limit=0.8,
                    measured=0.7,
                    message="context_token_share 0.70 < 0.80",
                )
            ],
        ),
        cost=Cost(forward_passes=5, tokens_processed=1234, seconds=1.5),
    )


class _Collector(HTMLParser):
    """Collects the tags (with attributes) found inside <svg id="reliance-chart">."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.charts = 0
        self.inside: list[tuple[str, dict[str, str | None]]] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        if tag == "svg" and attributes.get("id") == "reliance-chart":
            self.charts += 1
            self.depth = 1
            return
        if self.depth:
            self.inside.append((tag, attributes))
            if tag == "svg":
                self.depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "svg" and self.depth:
            self.depth -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self.depth:
            self.depth -= 1


@pytest.fixture(scope="module")
def page() -> str:
    return render_report_html(make_report())


@pytest.fixture(scope="module")
def parsed(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def test_chart_has_two_bars_per_source(parsed: _Collector) -> None:
    n = 3
    assert parsed.charts == 1
    rects = [attrs for tag, attrs in parsed.inside if tag == "rect"]
    bars = [a for a in rects if "bar" in (a.get("class") or "").split()]
    assert len(bars) == 2 * n
    assert sum(a.get("class") == "bar attention" for a in bars) == n
    assert sum(a.get("class") == "bar reliance" for a in bars) == n
    assert [a["data-source"] for a in bars if a["class"] == "bar attention"] == ["d0", "d1", EVIL_ID]
    assert all(float(a["width"]) >= 0 and float(a["height"]) >= 0 for a in bars)
    missing = [a for a in bars if a["data-source"] == "d1"]
    assert all(float(a["width"]) == 0 for a in missing)


def test_negative_reliance_drawn_left_of_zero(parsed: _Collector) -> None:
    bars = {(a["data-source"], a["class"]): a for t, a in parsed.inside if t == "rect" and "data-source" in a}
    pos, neg = bars[("d0", "bar reliance")], bars[(EVIL_ID, "bar reliance")]
    zero = float(pos["x"])
    assert float(neg["x"]) + float(neg["width"]) == pytest.approx(zero, abs=0.1)
    assert float(neg["width"]) > 0
    # each series scaled to its own max (reliance: including the interval ends, here 3.0 nats)
    full = float(bars[("d0", "bar attention")]["width"])  # the largest attention fills the length
    assert float(pos["width"]) == pytest.approx(full * 2.5 / 3.0, abs=0.1)


def test_user_text_escaped(page: str) -> None:
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert "<b>not</b>" not in page and "&lt;b&gt;not&lt;/b&gt;" in page
    assert "capital of France? &lt;i&gt;" in page
    assert "flag &lt;&amp;&gt;" in page
    assert "Paris &amp; nothing else" in page


def test_offline_no_external_references(page: str, parsed: _Collector) -> None:
    assert not [ref for ref in parsed.refs if re.match(r"\s*(https?:)?//", ref)]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "@import" not in page


def test_content_sections(page: str) -> None:
    expected = [
        "faithaudit reliance report",
        "decisive",
        "distracting",
        "no label",
        "tiny-llm",
        "abc123",
        "Local stand-in; numbers describe tiny-llm only.",
        "Gate: failed",
        "context_token_share 0.70 &lt; 0.80",
        "0.400 (3 placebos)",
        "Noise floor 0.400 nats",
        "attention_disagrees_with_reliance",
        "60.0%",
        "-0.75",
        "2.50",
        "—",
        "attention share",
        "reliance (nats",
        "5 forward passes",
        "1234 tokens processed",
        "1.50 s",
        "generated",
        "Paris is the capital of France.",
    ]
    for text in expected:
        assert text in page, text


def test_intervals_as_error_bars_and_the_floor_as_a_band(parsed: _Collector, page: str) -> None:
    paths = [a for t, a in parsed.inside if t == "path" and a.get("class") == "interval"]
    assert sorted(a["data-source"] for a in paths) == sorted(["d0", EVIL_ID])
    band = [a for t, a in parsed.inside if t == "rect" and a.get("class") == "floor"]
    assert len(band) == 1 and float(band[0]["width"]) > 0
    assert "[2.10, 3.00]" in page and "interval [+2.10, +3.00]" in page  # table column and the label's reason
    assert "without d0" in page and "I am not sure." in page  # regenerated answer beside the audited one


def test_title_override_and_no_proxy_note() -> None:
    report = make_report().model_copy(deep=True)
    report.model.is_proxy = False
    report.gate = GateResult(passed=True)
    page = render_report_html(report, title="My <audit>")
    assert "<title>My &lt;audit&gt;</title>" in page
    assert 'class="proxy"' not in page
    assert "Gate: passed" in page


def test_empty_sources_renders() -> None:
    report = make_report().model_copy(update={"sources": []})
    collector = _Collector()
    collector.feed(render_report_html(report))
    assert collector.charts == 1
    assert not [a for t, a in collector.inside if t == "rect" and "bar" in (a.get("class") or "")]
