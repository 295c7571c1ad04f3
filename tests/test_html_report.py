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
from faithaudit.pages.report import render_report_html

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


def _points(parsed: _Collector) -> dict[str, dict[str, str | None]]:
    return {a["data-source"]: a for t, a in parsed.inside if t == "circle" and a.get("class") == "point"}


def _zero_y(parsed: _Collector) -> float:
    """The y of the reliance zero line: the one horizontal axis line drawn in the axis colour."""
    lines = [a for t, a in parsed.inside if t == "line" and a.get("stroke") == "#374151" and a["y1"] == a["y2"]]
    assert len(lines) == 1
    return float(lines[0]["y1"])


def test_scatter_has_one_point_per_measured_source(parsed: _Collector, page: str) -> None:
    assert parsed.charts == 1
    points = _points(parsed)
    assert sorted(points) == sorted(["d0", EVIL_ID])  # d1 has neither attention nor reliance
    assert "Not plotted (attention or reliance not measured): d1." in page
    labels = [a for t, a in parsed.inside if t == "text" and a.get("class") == "point-label"]
    assert sorted(a["data-source"] for a in labels) == sorted(points)


def test_scatter_axes_are_shared_and_honest(parsed: _Collector) -> None:
    points, zero = _points(parsed), _zero_y(parsed)
    d0, evil = points["d0"], points[EVIL_ID]
    assert float(d0["cy"]) < zero < float(evil["cy"])  # +2.5 nats above the zero line, -0.75 below
    assert float(d0["cx"]) > float(evil["cx"])  # attention 0.6 vs 0.4: one x scale for both
    ticks = {a.get("y"): a for t, a in parsed.inside if t == "text" and a.get("class") == "tick"}
    assert ticks  # labelled ticks on both axes
    rules = [a for t, a in parsed.inside if t == "line" and "rule" in (a.get("class") or "")]
    kinds = sorted(a["class"] for a in rules)
    assert kinds == ["rule h decisive", "rule h distracting", "rule h supporting", "rule v attended",
                     "rule v not-attended"]  # fmt: skip
    decisive = next(float(a["y1"]) for a in rules if a["class"] == "rule h decisive")
    assert float(d0["cy"]) < decisive < zero  # 2.5 nats is above the 2-nat decisive line


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
        "Verdict",
        "The answer relies on d0 (+2.5 nats [+2.1, +3.0])",
        "without any context it collapses (-4.8 nats)",
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


def _rich_report() -> AuditReport:
    from faithaudit.api_schemas import MethodCost, RetrievalInfo, RetrievedDocument, TokenScore
    from faithaudit.api_schemas.report import RetrievalSensitivity, RetrievalVariant

    report = make_report().model_copy(deep=True)
    report.granularity = "sentence"
    report.sources = [
        _source("d0#0", "Paris is the capital.", attention=0.5, reliance=3.0, label="decisive"),
        _source("d0#1", "It has <em>bridges</em>.", attention=0.5, reliance=0.0, label="within_noise"),
    ]
    for src in report.sources:
        src.document_id = "d0"
    report.token_scores = [
        TokenScore(text="Par", logprob_full=-0.1, logprob_no_context=-5.1, context_gain=5.0,
                   reliance_by_source={"d0#0": 4.0, "d0#1": 0.1}),
        TokenScore(text="is <script>", logprob_full=-0.2, logprob_no_context=-0.1, context_gain=-0.1,
                   reliance_by_source={"d0#0": -0.1, "d0#1": 0.0}),
    ]  # fmt: skip
    report.gate = GateResult(passed=True, thresholds={"min_context_reliance": 1.0})
    stages = {
        "leave_one_out": MethodCost(forward_passes=2, tokens_processed=40, seconds=0.7),
        "context_ablation": MethodCost(forward_passes=7, tokens_processed=59, seconds=1.3),
    }
    report.cost = Cost(forward_passes=9, tokens_processed=99, seconds=2.0, by_stage=stages)
    docs = [RetrievedDocument(id="d0", rank=1, score=0.81)]
    report.retrieval = RetrievalInfo(corpus="wiki", k=1, embedding_model="minilm", documents=docs,
                                     next_document=RetrievedDocument(id="d9", rank=2, score=0.5))  # fmt: skip
    report.retrieval_sensitivity = RetrievalSensitivity(
        logprob_at_k=-1.2, depth_k_plus_1=RetrievalVariant(name="depth_k_plus_1", document_ids=["d0", "d9"],
                                                           logprob=-1.5, delta=-0.3), max_abs_delta=0.3)  # fmt: skip
    return report


def test_token_heatmap_sentences_retrieval_thresholds_and_stage_cost() -> None:
    page = render_report_html(_rich_report())
    heat = re.search(r'<div class="heatmap" id="response-heatmap">(.*?)</div>', page, re.S).group(1)
    tokens = re.findall(r'<span class="token" style="background:rgba\(([\d,]+),([\d.]+)\)"', heat)
    assert [t[0] for t in tokens] == ["27,127,59", "192,38,45"]  # context helps the first, hurts the second
    assert float(tokens[0][1]) > float(tokens[1][1])  # 5 nats saturates, 0.1 barely tints
    assert "is &lt;script&gt;" in heat and "d0#0 +4.00" in heat  # escaped token text; per-source hover figures
    assert page.count('<td class="num" data-source="d0#0">') == 2  # the per-token table, one cell per token
    assert re.search(r'<mark class="relied" data-source="d0#0"[^>]*>Paris is the capital.</mark>', page)
    assert '<span data-source="d0#1" title="d0#1: within_noise">It has &lt;em&gt;bridges&lt;/em&gt;.</span>' in page
    retrieval = page[page.index('id="retrieval"') :]
    assert "0.810" in retrieval and "d9" in retrieval and "depth_k_plus_1" in retrieval and "-0.30" in retrieval
    thresholds = page[page.index('id="thresholds"') : page.index('id="attention-vs-reliance"')]
    assert "min_context_reliance" in thresholds and "decisive" in thresholds and "1.250" in thresholds
    cost = page[page.index('id="cost"') :]
    assert cost.index("context_ablation") < cost.index("leave_one_out")  # slowest stage first
    assert "workers" not in cost[: cost.index("</p>")]  # one worker: nothing to say
    report = _rich_report()
    split = report.model_copy(update={"cost": report.cost.model_copy(update={"workers": 2})})
    assert "summed over 2 workers" in render_report_html(split)
    assert 'id="methods"' in page and "nats of log-odds" in page


def test_an_interval_that_no_order_measured_says_so() -> None:
    from faithaudit.api_schemas import Controls

    controls = Controls(
        seed=0,
        decoding={},
        placebos={},
        orders={"count": 3, "permutations": [], "causal": False, "rescored_sources": ["d0"]},
        attention={},
        model_weights="float32",
        faithaudit_version="test",
        request_sha256="0" * 64,
    )
    page = render_report_html(make_report().model_copy(update={"controls": controls}))
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr data-source="([^"]+)">(.*?)</tr>', page, re.S)}
    marker = "± floor: no order could change its label"
    assert marker not in rows["d0"] and marker in rows["doc&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"]
    assert "(re-scored: d0)" in page
    assert marker not in render_report_html(make_report())  # no controls (an old report): nothing claimed


def test_a_surrogate_rank_whose_interval_holds_zero_says_so_on_the_golden_report() -> None:
    """The recorded RAG audit (tests/data/golden): only the fictional fact's surrogate interval excludes 0; the
    off-topic paragraphs (photosynthesis, weight 0.0, rank 3) are marked, whatever their rank."""
    from cases import ROOT

    report = AuditReport.model_validate_json((ROOT / "tests" / "data" / "golden" / "rag.json").read_text())
    page = render_report_html(report)
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr data-source="([^"]+)">(.*?)</tr>', page, re.S)}
    marker = "interval holds 0: no effect told apart"
    marked = {s.id for s in report.sources if marker in rows[s.id]}
    assert marked == {s.id for s in report.sources if s.surrogate_interval[0] <= 0 <= s.surrogate_interval[1]}
    assert marked == {"d1", "d3", "d4"} and {s.id: s.surrogate_rank for s in report.sources}["d4"] == 3
