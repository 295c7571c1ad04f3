"""Verdicts that know their own error, on the real model: the bundled demo's off-topic paragraphs are not
decisive in the given order or another one, neutral paragraphs from a source disjoint from the placebo bank are
neither decisive nor distracting, and bad calibration settings are field errors. Statistics over many cases are
in benchmarks/calibration.py (committed results); these are the live cases."""

from __future__ import annotations

import json

import pytest
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, SHARED_BENCHMARKS, load_example
from pydantic import ValidationError

from faithaudit.api_schemas import AuditRequest
from faithaudit.audits.run import run_audit
from faithaudit.errors import InvalidRequestError

LEAN = {"methods": ["leave_one_out"]}  # labels need leave-one-out, placebos, orders and flips (the defaults)


def labels(report) -> dict[str, str]:
    return {s.id: s.label for s in report.sources}


def test_the_demo_labels_only_the_answer_bearing_paragraph_decisive(golden_reports):
    report = golden_reports["rag"]  # examples/fictional_fact.json with the default controls
    assert labels(report)["d2"] == "decisive"
    assert labels(report)["d3"] != "decisive" and labels(report)["d4"] != "decisive"  # Eiffel Tower, photosynthesis
    s = report.summary
    assert s.noise_floor_nats is not None and len(s.placebo_reliance) == 16 and s.order_top1_stability == 1.0
    d2 = next(x for x in report.sources if x.id == "d2")
    assert d2.reliance_interval[0] > max(2.0, s.noise_floor_nats) and d2.reliance_p == pytest.approx(1 / 17, abs=1e-5)
    assert all(x.label_reason for x in report.sources)
    assert report.controls.placebos["count"] == 16 and report.controls.orders["count"] == 3


def test_the_demo_in_another_order(model):
    body = load_example("fictional_fact.json")
    docs = {d["id"]: d for d in body["pipeline"]["documents"]}
    body["pipeline"]["documents"] = [docs[k] for k in ("d4", "d2", "d1", "d3")]
    body["audit"] = LEAN
    report = run_audit(AuditRequest.model_validate(body), model)
    got = labels(report)
    assert got["d2"] == "decisive" and got["d3"] != "decisive" and got["d4"] != "decisive", got


def hotpotqa_distractors(count: int) -> list[str]:
    """Non-gold HotpotQA paragraphs: neutral text from a source disjoint from the placebo bank."""
    out = []
    with (SHARED_BENCHMARKS / "hotpotqa_dev_distractor.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            gold = set(r["gold_document_ids"])
            out += [" ".join(d["text"].split()) for d in r["documents"] if d["id"] not in gold]
            out = [t for t in out if 150 <= len(t) <= 400]
            if len(out) >= count:
                return out[:count]
    return out


@pytest.mark.skipif(not SHARED_BENCHMARKS.is_dir(), reason="../shared/data/benchmarks is not beside the checkout")
def test_neutral_paragraphs_are_neither_decisive_nor_distracting(model):
    n1, n2 = hotpotqa_distractors(2)
    docs = [("n1", n1), FICTIONAL_DOC, ("n2", n2)]
    request = AuditRequest.model_validate(
        {
            "query": FICTIONAL_QUERY,
            "response": FICTIONAL_RESPONSE,
            "pipeline": {"kind": "rag", "documents": [{"id": i, "text": t} for i, t in docs]},
            "audit": LEAN,
        }
    )
    report = run_audit(request, model)
    got = labels(report)
    assert got["key"] == "decisive", got
    assert got["n1"] not in ("decisive", "distracting") and got["n2"] not in ("decisive", "distracting"), got


def test_calibration_settings_out_of_range_are_field_errors():
    body = load_example("fictional_fact.json")
    for field, value in (("placebos", 65), ("placebos", -1), ("orders", 0), ("orders", 9)):
        with pytest.raises(ValidationError) as exc:
            AuditRequest.model_validate(body | {"audit": {field: value}})
        assert exc.value.errors()[0]["loc"] == ("audit", field)


def test_a_prompt_that_cannot_fit_its_placebos_names_audit_placebos(model):
    long_doc = "The committee met again to review the long schedule of the coming season. " * 320
    assert 4200 < len(model.encode(long_doc)) < 7000  # fits once, not twice, in 8192 tokens
    body = {
        "query": FICTIONAL_QUERY,
        "response": FICTIONAL_RESPONSE,
        "pipeline": {"kind": "rag", "documents": [{"id": "long", "text": long_doc}]},
        "audit": {"methods": ["leave_one_out"], "answer_flip_top_k": 0, "orders": 1},
    }
    with pytest.raises(InvalidRequestError) as exc:
        run_audit(AuditRequest.model_validate(body), model)
    assert exc.value.fields[0].path == "audit.placebos" and "placebo" in exc.value.fields[0].msg


@pytest.mark.parametrize("example", ["fictional_fact.json", "agent_case.json"])
def test_the_placebo_fit_bound_is_above_every_placebo_prompt(model, example):
    """The submit path checks the placebos against the context window from a bound, without encoding 16 prompts;
    on a RAG and an agent layout the bound is at least the longest real placebo prompt, and not far above it."""
    from faithaudit.audits.placebos import PLACEBO_ID, _longest_bound, longest_placebo_chars, placebo_prompts
    from faithaudit.audits.prompt.layout import request_layout

    request = AuditRequest.model_validate(load_example(example))
    layout, _, _ = request_layout(request, model)
    texts = [s.text for s in layout.sources]
    bound = _longest_bound(layout, PLACEBO_ID.format(k=15), longest_placebo_chars(texts), model)
    lengths = {len(layout.inserted(k, "placebo-15", "", model).ids) for k in range(layout.insertion_slots + 1)}
    assert len(lengths) == 1 or not layout.insertion_length_fixed  # measured at one position only where it may be
    longest_text = 0
    for seed in range(8):  # the bound holds whatever the seed
        items, prompts = placebo_prompts(layout, model, request.query, 16, seed=seed)
        longest = max(len(p) for p in prompts)
        longest_text = max(longest_text, *(len(p.text) for p in items))
        assert longest <= bound < longest + 4 * max(len(p.text) for p in items)
    assert longest_text <= longest_placebo_chars(texts)


def test_the_placebo_text_bound_holds_for_any_sources_query_and_seed():
    """``longest_placebo_chars`` bounds every text ``make_placebos`` writes (the submit check relies on it to skip
    making placebos): random source lengths from 1 to 3,000 characters, queries that remove bank sentences."""
    import numpy as np

    from faithaudit.audits.placebos import BANK, longest_placebo_chars, make_placebos

    rng = np.random.default_rng(7)
    queries = ["Who wrote it?", "Why was the meeting moved to a larger room?", BANK[3] + " " + BANK[9]]
    for trial in range(300):
        texts = ["x" * int(n) for n in rng.integers(1, 3000, size=int(rng.integers(1, 6)))]
        items = make_placebos(queries[trial % 3], texts, 16, seed=trial, slots=len(texts))
        assert max(len(p.text) for p in items) <= longest_placebo_chars(texts)
