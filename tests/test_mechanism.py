"""Mechanism audits on the real default model (one full run on the demo case, a second corruption seed's span trace,
the report's section in the CLI and the HTML), bad input over HTTP, and the pure readout functions.
Architectures other than Llama are covered in ``test_mechanism_architectures.py`` (tiny random models)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from cases import load_example

from faithaudit.api_schemas import AuditRequest
from faithaudit.audits.mechanism import readout

DEMO_MECHANISM = load_example("fictional_fact.json") | {
    "audit": {"methods": ["leave_one_out", "mechanism"], "placebos": 0, "orders": 1, "answer_flip_top_k": 0}
}
DEMO_MECHANISM.pop("thresholds")


@pytest.fixture(scope="module")
def demo_report(model):
    from faithaudit.audits.run import run_audit

    return run_audit(AuditRequest.model_validate(DEMO_MECHANISM), model)


def test_the_demo_trace_passes_its_self_checks_and_finds_where_the_answer_leaves(demo_report):
    (m,) = demo_report.mechanism
    assert m.source == "d2" and m.corruption == "token_swap" and m.skipped_reason is None
    span = [row.restore_source_residual for row in m.layers]
    assert len(span) == 30
    assert span[0] >= 0.95 and span[-1] <= 0.05  # layer 0 is the embeddings; the last layer reads nothing back
    assert abs(m.all_attention_after_restore - 1.0) <= 0.02
    assert abs(m.unchanged_run_delta_nats) <= 1e-4
    # token_swap stays on-distribution: as damaging as removing the paragraph (within 1 nat)
    assert abs(m.corrupted_logprob - m.loo_logprob) <= 1.0
    assert m.clean_logprob - m.corrupted_logprob > 5.0
    first, last = m.readout_layers
    assert first is not None and last is not None and 8 <= first <= last
    assert len(m.heads) == 4 * 9  # 4 layers x 9 heads
    assert m.forward_passes <= 250 and demo_report.cost.by_stage["mechanism"].forward_passes == m.forward_passes
    top = max(m.heads, key=lambda h: h.restore)
    same_layer = sorted(h.ablation_drop_nats for h in m.heads if h.layer == top.layer)
    assert top.ablation_drop_nats > same_layer[len(same_layer) // 2]  # the top causal head beats its layer's median
    assert m.attention_share_of_effect is not None and "d2" in m.reading and f"{top.layer}.{top.head}" in m.reading
    assert m.router is None  # dense model


def test_a_second_corruption_seed_agrees_on_the_readout_layers(model, demo_report):
    from faithaudit.audits.context import Findings, StageContext
    from faithaudit.audits.mechanism.source import trace_in_context
    from faithaudit.audits.meter import ProgressTracker
    from faithaudit.audits.prompt.layout import request_layout
    from faithaudit.audits.scoring import score_full_context

    request = AuditRequest.model_validate(DEMO_MECHANISM)
    layout, response, _ = request_layout(request, model)
    response_ids = model.encode(response)
    base = score_full_context(model, layout, response_ids, with_attention=False)
    ctx = StageContext(request, model, layout, response, response_ids, base, ProgressTracker(1, None))
    finding = trace_in_context(ctx, Findings(), 1, seed=12345, span_only=True)
    span = readout.recovered(finding.trace.span, finding.trace.clean, finding.trace.corrupted)
    other = readout.readout_layers(span)
    (m,) = demo_report.mechanism
    assert all(abs(a - b) <= 2 for a, b in zip(other, m.readout_layers, strict=True)), (other, m.readout_layers)


def test_the_section_reads_in_the_cli_and_draws_in_the_html(demo_report):
    from rich.console import Console

    from faithaudit.cli import _print_mechanism
    from faithaudit.pages.report import render_report_html

    out = io.StringIO()
    _print_mechanism(Console(file=out, width=200), demo_report)
    text = out.getvalue()
    assert "mechanism d2 (token swap)" in text and demo_report.mechanism[0].reading in text
    page = render_report_html(demo_report)
    assert 'id="mechanism"' in page and page.count('class="curve ') == 5 and page.count('<circle class="head') == 36
    assert not demo_report.mechanism[0].self_check_failures
    skipped = demo_report.mechanism[0].model_copy(
        update={
            "source": "d3",
            "layers": [],
            "heads": [],
            "readout_layers": [],
            "skipped_reason": "moves 0.2 nats",
            "reading": "",
        }
    )
    page = render_report_html(demo_report.model_copy(update={"mechanism": [demo_report.mechanism[0], skipped]}))
    assert "moves 0.2 nats" in page and page.count('class="curve ') == 5  # a skipped source draws no chart


BAD = [
    ({"methods": ["leave_one_out", "mechanism"], "mechanism_sources": ["d9"]}, "audit.mechanism_sources[0]"),
    ({"methods": ["mechanism"]}, "audit.methods"),
    ({"methods": ["leave_one_out", "mechanism"], "mechanism_top_k": 0}, "audit.mechanism_top_k"),
    ({"methods": ["leave_one_out", "mechanism"], "mechanism_head_layers": 31}, "audit.mechanism_head_layers"),
    ({"methods": ["leave_one_out", "mechanism"], "mechanism_max_passes": 100}, "audit.mechanism_max_passes"),
    ({"methods": ["leave_one_out", "mechanism"], "mechanism_corruption": "blur"}, "audit.mechanism_corruption"),
    ({"methods": ["mechanism"], "mechanism_sources": ["d2", "d2"]}, "audit.mechanism_sources[1]"),
]


@pytest.mark.parametrize(("audit", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_mechanism_input_is_a_422_naming_the_field(tmp_path, model, audit, field):
    from inprocess import service_client

    body = load_example("fictional_fact.json") | {"audit": audit}
    with service_client(f"sqlite:///{tmp_path / 'fa.db'}", data_dir=tmp_path) as (client, store):
        key = store.create_api_key("acme")[0]
        r = client.post("/v1/audits", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 422, r.text
    assert field in [f["path"] for f in r.json()["error"]["fields"]], r.json()


def test_an_architecture_without_hooks_is_refused_naming_it():
    from faithaudit.audits.mechanism.budget import ModelShape, check_mechanism
    from faithaudit.errors import InvalidRequestError

    request = AuditRequest.model_validate(DEMO_MECHANISM)
    with pytest.raises(InvalidRequestError, match="'gpt_bigcode'"):
        check_mechanism(request, ["d1", "d2", "d3", "d4"], ModelShape("gpt_bigcode", 12, 12))
    check_mechanism(request, ["d1", "d2", "d3", "d4"], ModelShape("llama", 30, 9))  # SmolLM2 fits the budget
    with pytest.raises(InvalidRequestError, match="sliding attention window") as err:
        check_mechanism(request, ["d1"], ModelShape("gemma2", 26, 8, sliding_window=4096), sequence_tokens=5000)
    assert err.value.fields[0].path == "audit.methods"
    check_mechanism(request, ["d1"], ModelShape("gemma2", 26, 8, sliding_window=4096), sequence_tokens=300)
    top2 = AuditRequest.model_validate(DEMO_MECHANISM | {"audit": DEMO_MECHANISM["audit"] | {"mechanism_top_k": 2}})
    with pytest.raises(InvalidRequestError) as err:
        check_mechanism(top2, ["d1"], None)
    assert err.value.fields[0].path == "audit.mechanism_top_k"
    assert ModelShape.of_config({"model_type": "gemma2", "layer_types": ["sliding_attention"], "sliding_window": 9})
    assert (
        ModelShape.of_config({"model_type": "qwen2", "sliding_window": 9, "use_sliding_window": False}).sliding_window
        is None
    )


def test_readout_functions():
    assert readout.readout_layers([1.0, 0.9, 0.4, 0.2, 0.05, 0.0]) == [2, 4]
    assert readout.readout_layers([1.0, 0.9]) == [None, None]
    assert readout.attention_share_of_effect([0.6, -0.2, 0.2], [0.2, 0.0]) == pytest.approx(0.8)
    assert readout.attention_share_of_effect([-0.1], [0.0]) is None
    np.testing.assert_allclose(readout.recovered([-10.0, -5.0, 0.0], clean=0.0, corrupted=-10.0), [0, 0.5, 1])
    assert readout.skip_reason(-1.0, -1.5, None) is not None  # 0.5 nats: under 1 nat
    assert readout.skip_reason(-1.0, -5.0, 5.0) is not None  # under the noise floor
    assert readout.skip_reason(-1.0, -5.0, 0.5) is None
    heads = [
        readout.HeadEffect(29, 1, restore=0.28, ablation_drop_nats=1.9, attention_to_source=0.01),
        readout.HeadEffect(20, 3, restore=0.0, ablation_drop_nats=0.1, attention_to_source=0.21),
        readout.HeadEffect(23, 2, restore=0.39, ablation_drop_nats=1.4, attention_to_source=0.3),
    ]
    assert readout.causal_not_attending(heads) == [[29, 1]]
    assert readout.attending_not_causal(heads) == [[20, 3]]
    sentence = readout.reading("d2", [18, 23], 0.85, heads)
    assert sentence == (
        "the answer leaves d2 at layers 18-23 and is carried by attention (85% of the single-layer recovery is "
        "attention), mostly heads 23.2 and 29.1; 29.1 barely attends to d2"
    )
    assert readout.routing_change(np.array([[1, 2], [3, 4]]), np.array([[2, 1], [3, 5]])) == 0.5
    assert readout.total_variation(np.zeros((2, 4)), np.zeros((2, 4))) == 0.0


def test_the_mechanism_section_shows_in_a_browser(demo_report, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from faithaudit.pages.report import render_report_html

    page = tmp_path / "mechanism.html"
    page.write_text(render_report_html(demo_report), encoding="utf-8")
    browser.get(page.as_uri())
    section = browser.find_element(By.ID, "mechanism")
    section.location_once_scrolled_into_view  # noqa: B018 - scroll so that is_displayed reads the real layout
    assert section.find_element(By.CSS_SELECTOR, "p.reading").text == demo_report.mechanism[0].reading
    curves = section.find_elements(By.CSS_SELECTOR, "svg.layer-curves polyline")
    assert len(curves) == 5 and all(c.is_displayed() for c in curves)
    box = section.find_element(By.CSS_SELECTOR, "svg.layer-curves").size
    assert box["width"] >= 600 and box["height"] >= 250
    dots = section.find_elements(By.CSS_SELECTOR, "svg.heads-scatter circle.head")
    assert len(dots) == 36
    flagged = section.find_elements(By.CSS_SELECTOR, "circle.head.causal-not-attending")
    assert len(flagged) == len(demo_report.mechanism[0].causal_not_attending_heads)


def test_traced_sources_are_the_named_ones_or_the_top_k_by_reliance():
    from types import SimpleNamespace

    from faithaudit.audits.context import Findings
    from faithaudit.audits.stages.mechanism import traced_sources

    layout = SimpleNamespace(sources=[SimpleNamespace(id=f"d{k}") for k in range(1, 5)])
    found = Findings(reliance=np.array([0.5, 20.0, 0.9, 3.0]))

    def ctx(**audit):
        request = AuditRequest.model_validate(DEMO_MECHANISM | {"audit": DEMO_MECHANISM["audit"] | audit})
        return SimpleNamespace(options=request.audit, layout=layout)

    assert traced_sources(ctx(), found) == [1]
    assert traced_sources(ctx(mechanism_top_k=2), found) == [1, 3]
    assert traced_sources(ctx(methods=["mechanism"], mechanism_sources=["d3"]), Findings()) == [2]
