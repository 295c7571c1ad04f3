"""Fast unit tests of the engine's bookkeeping with the scripted fake adapter (``audits.model.fake``): the plan,
the registry, each branch (given vs generated response, RAG vs agent) and each flag. The real-model tests are the
evidence that the methods work; these pin what the engine does with whatever the model says."""

from __future__ import annotations

import typing

import pytest

from faithaudit.api_schemas import AuditOptions, AuditRequest
from faithaudit.api_schemas.request import Method
from faithaudit.audits.model.fake import FakeModelAdapter
from faithaudit.audits.plan import AuditPlan, UnknownStageError, get_stage, list_methods, list_stages, register_stage
from faithaudit.audits.run import run_audit

DOCS = [
    ("key", "Vellmora's capital is ZQX harbour."),
    ("noise", "Glaciers form where snow builds up."),
    ("trap", "Some say the capital is WRONG town."),
]
FAST = {"num_ablations": 8, "answer_flip_top_k": 2}


def rag(response: str | None = "The capital is ZQX.", docs=DOCS, **audit) -> AuditRequest:
    body = {
        "query": "What is the capital of Vellmora?",
        "pipeline": {"kind": "rag", "documents": [{"id": i, "text": t} for i, t in docs]},
        "audit": FAST | audit,
    }
    if response is not None:
        body["response"] = response
    return AuditRequest.model_validate(body)


def scripted(**kw) -> FakeModelAdapter:
    kw.setdefault("effects", {"ZQX": 12.0, "WRONG": -3.0})
    kw.setdefault("answers", [("ZQX", "The capital is ZQX.")])
    return FakeModelAdapter(**kw)


def by_id(report):
    return {s.id: s for s in report.sources}


def test_method_names_declared_for_the_api_equal_the_registry():
    assert set(typing.get_args(Method)) == set(list_methods())
    assert set(list_methods()) < set(list_stages()) and "answer_flip" in list_stages()
    with pytest.raises(UnknownStageError, match="valid stages: attention, attention_baseline, leave_one_out"):
        get_stage("telepathy")
    with pytest.raises(ValueError, match="already registered"):
        register_stage("leave_one_out", passes=lambda o, n: 0, order=99)(lambda ctx, found: found)


def test_plan_orders_stages_counts_passes_and_drops_flips_without_a_ranking():
    opts = AuditOptions(methods=["no_context", "leave_one_out"], answer_flip_top_k=5)
    plan = AuditPlan.build(opts, 3)
    assert [s.name for s in plan.stages] == ["leave_one_out", "no_context", "placebos", "orders", "answer_flip"]
    assert plan.passes == {"leave_one_out": 3, "orders": 2 * 4, "no_context": 1, "placebos": 16, "answer_flip": 20}
    assert plan.total_passes == 1 + 3 + 8 + 1 + 16 + 20 and plan.with_attention is False
    trace = AuditPlan.build(opts, 3, reorderable=False)
    assert "orders" not in [s.name for s in trace.stages]  # a trace keeps its causal order
    alone = AuditPlan.build(AuditOptions(methods=["no_context"], answer_flip_top_k=3, placebos=0, orders=1), 3)
    assert [s.name for s in alone.stages] == ["no_context"]  # nothing ranks the sources: no flips
    adaptive_options = AuditOptions(methods=["context_ablation", "attention"], num_ablations=None)
    adaptive = AuditPlan.build(adaptive_options, 3)
    assert adaptive.passes["context_ablation"] == 8 and adaptive.with_attention  # 2^3 <= 64: exhaustive
    assert AuditPlan.build(adaptive_options, 7).passes["context_ablation"] == 64  # the adaptive cap


def test_given_response_reliance_labels_flips_and_progress():
    model, seen = scripted(), []
    report = run_audit(rag(), model, progress=lambda f, stage: seen.append((f, stage)))
    s = by_id(report)
    assert report.response_origin == "request" and report.summary.answer_full == "The capital is ZQX."
    assert s["key"].reliance == pytest.approx(12.0) and s["key"].label == "decisive"
    assert s["noise"].reliance == pytest.approx(0.0, abs=1e-9) and s["noise"].label == "within_noise"
    assert s["trap"].reliance == pytest.approx(-3.0) and s["trap"].label == "distracting"
    assert s["key"].reliance_interval == (12.0, 12.0)  # the fake ignores order: every order agrees
    assert report.summary.noise_floor_nats == 0.0 and report.summary.order_top1_stability == 1.0
    assert s["key"].reliance_p == pytest.approx(1 / 17, abs=1e-6) and s["noise"].reliance_p == 1.0
    assert "interval [+12.00, +12.00]" in s["key"].label_reason and "noise" in s["noise"].label_reason
    # only sources above the noise floor are regenerated; the answer span is what the response adds
    assert s["key"].answer_changed is True and s["key"].answer_without == "I do not know."
    assert s["noise"].answer_changed is None and s["trap"].answer_changed is None
    assert report.summary.answer_span == "zqx" and report.summary.flips_counted is True
    assert report.summary.greedy_margin_nats == 5.0 and report.summary.placebo_flip_rate == 0.0
    assert report.summary.context_reliance == pytest.approx(9.0) and report.summary.parametric is False
    assert "distracting: trap" in report.summary.flags
    assert seen[-1][0] == 1.0 and [f for f, _ in seen] == sorted(f for f, _ in seen)
    stages = report.cost.by_stage
    assert list(stages) == [
        "full_context", "attention_baseline", "leave_one_out", "no_context", "placebos", "orders",
        "context_ablation", "answer_flip",
    ]  # fmt: skip
    assert stages["leave_one_out"].forward_passes == 3 and stages["context_ablation"].forward_passes == 2**3
    # 2^3 masks fit the budget: every mask is scored, Banzhaf values are exact, the fit is cross-validated
    assert (
        report.controls.masks.design_kind == "exhaustive" and report.summary.surrogate_lds_method == "cross_validation"
    )
    assert s["key"].banzhaf == pytest.approx(12.0) and s["trap"].banzhaf == pytest.approx(-3.0)
    assert s["key"].banzhaf_range == pytest.approx((12.0, 12.0))  # additive: the same change in every context
    lo, hi = s["key"].surrogate_interval
    assert lo <= s["key"].surrogate_weight <= hi and lo > 0
    # the margin holds, so each placebo is scored and then answered from its own cache: one token fed per answer
    assert stages["placebos"].forward_passes == 16 + 16
    # no placebo moves the fake: floor 0, so every source is re-scored in both other orders
    assert report.controls.orders["rescored_sources"] == ["key", "noise", "trap"]
    assert stages["orders"].forward_passes == 2 * 4 and s["trap"].reliance_interval == (-3.0, -3.0)
    assert stages["answer_flip"].forward_passes == 1 + 1  # the full answer and one source
    assert report.cost.forward_passes == model.counter.forward_passes
    unflipped = run_audit(rag(answer_flip_top_k=0), scripted()).cost.by_stage["placebos"]
    assert unflipped.forward_passes == 16 and stages["placebos"].tokens_processed == unflipped.tokens_processed + 16


def test_attention_is_reported_against_neutral_text_at_the_same_position():
    opts = {"methods": ["attention", "leave_one_out"], "placebos": 0, "orders": 1, "answer_flip_top_k": 0}
    report = run_audit(rag(**opts), scripted(attention={"Glaciers": 30.0}))
    s = by_id(report)
    assert report.cost.by_stage["attention_baseline"].forward_passes == 1
    noise, trap = s["noise"], s["trap"]
    assert noise.attention_position_ratio > 2 and noise.label == "attended_not_relied"
    assert "neutral text at its position" in noise.label_reason
    assert trap.attention_position_ratio < 1 and trap.attention_position_baseline > 0.2
    assert trap.attention_position_ratio == pytest.approx(trap.attention / trap.attention_position_baseline, rel=1e-4)
    assert noise.attention_per_token == pytest.approx(noise.attention / 6, rel=1e-4)  # six tokens in the fake
    assert noise.attention_layer_argmax == 0 and noise.attention_layer_max == pytest.approx(noise.attention, rel=1e-4)


def test_stability_variants_keep_ranks_and_labels_and_count_their_passes():
    opts = {"methods": ["attention", "leave_one_out"], "placebos": 0, "orders": 1, "answer_flip_top_k": 0}
    opts |= {"sampled_responses": 2, "sampling_temperature": 0.9, "paraphrases": ["Which town is Vellmora's capital?"]}
    model = scripted(samples=["The capital is ZQX.", "Maybe ZQX, maybe not."])
    report = run_audit(rag(**opts), model)
    st = report.stability
    assert [v.kind for v in st.variants] == ["sampled", "sampled", "paraphrase"]
    assert [v.text for v in st.variants][1:] == ["Maybe ZQX, maybe not.", "Which town is Vellmora's capital?"]
    assert st.sampling_temperature == 0.9 and st.sampled_responses == 2 and st.paraphrases == 1
    rows = {r.id: r for r in st.sources}
    assert rows["key"].reliance_top1_rate == 1.0 and rows["trap"].reliance_top1_rate == 0.0
    assert all(r.label_agreement == 1.0 and r.stable for r in st.sources)  # the fake's effects do not move
    assert report.cost.by_stage["stability"].forward_passes == 2 + 3 * (3 + 1)
    assert not [f for f in report.summary.flags if f.startswith("unstable_label")]
    assert run_audit(rag(**(opts | {"sampled_responses": 0, "paraphrases": []})), scripted()).stability is None


def test_controls_and_limitations_are_recorded():
    report = run_audit(rag(), scripted())
    c = report.controls
    assert report.schema_version == "2" and c.seed == 0 and len(c.request_sha256) == 64
    assert c.masks.count == 8 and c.masks.held_out == 0 and c.masks.keep_probability == 0.5
    assert c.placebos["count"] == 16 and len(c.placebos["positions"]) == 16
    assert c.orders["count"] == 3 and c.orders["permutations"][0] == ["key", "noise", "trap"]
    assert len({tuple(p) for p in c.orders["permutations"]}) == 3
    assert c.decoding["strategy"] == "greedy" and c.attention["layers"] == 2
    assert report.limitations == []
    bare = AuditRequest.model_validate(
        rag(placebos=0, orders=1).model_dump() | {"model": {"production_model": "gpt-4o"}}
    )
    lim = run_audit(bare, scripted()).limitations
    assert any("proxy for gpt-4o" in x for x in lim) and any("No placebo controls" in x for x in lim)
    assert any("One document order" in x for x in lim)


def test_noise_floor_keeps_small_reliance_within_noise():
    model = scripted(effects={"ZQX": 12.0, "Glaciers": 0.8}, jitter=1.0)
    report = run_audit(rag(), model)
    s, floor = by_id(report), report.summary.noise_floor_nats
    assert 0.8 < floor < 2.0 and len(report.summary.placebo_reliance) == 16
    assert s["key"].label == "decisive" and s["key"].reliance_z > 5
    assert s["noise"].label == "within_noise"  # +0.8 nats would be "supporting" without the floor
    lo, hi = s["noise"].reliance_interval
    assert lo < hi and lo < floor  # three orders disagree
    # inside (-floor, floor) no order could make a source anything but within_noise: not re-scored, reliance +- floor
    rescored = report.controls.orders["rescored_sources"]
    inside = [x for x in report.sources if -floor < x.reliance < floor]
    assert inside and {x.id for x in inside}.isdisjoint(rescored) and len(inside) + len(rescored) == 3
    for x in inside:
        assert x.reliance_interval == pytest.approx((x.reliance - floor, x.reliance + floor), abs=2e-6)
    assert report.cost.by_stage["orders"].forward_passes == 2 * (1 + len(rescored))  # the full pass and each one
    again = run_audit(rag(), scripted(effects={"ZQX": 12.0, "Glaciers": 0.8}, jitter=1.0))
    assert again.without_timings() == report.without_timings()  # seeded: two runs agree exactly


def test_unstable_greedy_answer_ignores_flips():
    report = run_audit(rag(), scripted(effects={"ZQX": 1.0}, margin=0.5))
    s = by_id(report)
    assert report.summary.flips_counted is False and report.summary.placebo_flip_rate is None
    assert s["key"].answer_changed is True and s["key"].label == "supporting"  # 1 nat: not decisive alone
    assert any(f.startswith("unstable_greedy_answer") for f in report.summary.flags)
    assert any("greedy answer is unstable" in x for x in report.limitations)
    stable = run_audit(rag(), scripted(effects={"ZQX": 1.0}))
    assert by_id(stable)["key"].label == "decisive"  # the same flip, counted: decisive above the floor


def test_generated_response_is_audited_and_is_the_full_answer():
    model = scripted()
    report = run_audit(rag(response=None), model)
    assert report.response_origin == "generated" and report.response == "The capital is ZQX."
    assert report.summary.answer_full == report.response and "generate" in report.cost.by_stage


def test_an_empty_generation_is_a_clear_error():
    from faithaudit.errors import FaithauditError

    with pytest.raises(FaithauditError, match="generated an empty response"):
        run_audit(rag(response=None), scripted(answers=[], default_answer=""))


def test_parametric_answer_and_low_surrogate_fit_are_flagged():
    report = run_audit(rag(), scripted(effects={}))
    flags = report.summary.flags
    assert report.summary.parametric is True and flags[0].startswith("parametric_answer")
    assert any(f.startswith("low_surrogate_fit") for f in flags)  # constant targets: no held-out ranking
    strict = run_audit(rag(methods=["leave_one_out", "context_ablation"], labels={"surrogate_lds_floor": -1.0}),
                       scripted())  # fmt: skip
    assert not any(f.startswith("low_surrogate_fit") for f in strict.summary.flags)


def test_attention_against_reliance_labels_and_top1_disagreement():
    # every eye on the noise paragraph; the trap paragraph now supports the answer a little
    model = scripted(effects={"ZQX": 12.0, "WRONG": 1.2}, attention={"Glaciers": 200.0})
    report = run_audit(rag(methods=["attention", "leave_one_out"], answer_flip_top_k=0), model)
    s = by_id(report)
    assert s["noise"].attention_rank == 1 and s["noise"].label == "attended_not_relied"
    assert s["trap"].label == "relied_not_attended" and "barely read" in s["trap"].label_reason
    assert s["key"].label == "decisive"  # attention labels never override decisive
    assert report.summary.top1_agreement is False
    assert "top1_disagreement: the most attended source is not the most relied on" in report.summary.flags
    assert "attention" not in report.cost.by_stage  # read in the full-context pass


def test_citations_of_an_unused_document_are_flagged():
    report = run_audit(rag(response="The capital is ZQX [key][noise].", answer_flip_top_k=0), scripted())
    assert {s.id for s in report.sources if s.cited} == {"key", "noise"}
    assert report.summary.citation_precision == 0.5 and report.summary.citation_recall == 1.0
    assert "cited_not_relied: noise" in report.summary.flags


def test_sentence_granularity_labels_sentences_of_one_document():
    docs = [("doc", "Glaciers are slow. The capital is ZQX harbour. Snow falls.")]
    report = run_audit(rag(docs=docs, granularity="sentence", answer_flip_top_k=0), scripted())
    assert [s.id for s in report.sources] == ["doc:s0", "doc:s1", "doc:s2"] and report.granularity == "sentence"
    assert by_id(report)["doc:s1"].label == "decisive"


AGENT = {
    "query": "What is 12 * 3?",
    "pipeline": {
        "kind": "agent",
        "steps": [
            {"id": "calc#1", "tool": "calculator", "arguments": {"expression": "12 * 3"}, "output": "36 QQ"},
            {"id": "wx#2", "tool": "weather", "arguments": {"city": "Oslo"}, "output": "Rain in Oslo"},
        ],
    },
    "response": "12 * 3 = 36.",
    "audit": {"num_ablations": 8, "answer_flip_top_k": 2, "methods": ["leave_one_out", "no_context",
              "tool_unavailable", "tool_counterfactual", "policy_replay"]},
}  # fmt: skip


def test_agent_branch_runs_tool_stages_and_compares_numbers():
    model = scripted(effects={"QQ": 8.0}, answers=[("QQ", "It is 36.")], default_answer="It is 40.")
    report = run_audit(AuditRequest.model_validate(AGENT), model)
    s = by_id(report)
    assert report.granularity == "tool_output" and report.agent.tool_calls == 2
    assert s["calc#1"].reliance == pytest.approx(8.0) and s["calc#1"].reliance_unavailable == pytest.approx(8.0)
    assert s["calc#1"].counterfactual_origin == "numbers_changed" and s["calc#1"].reliance_counterfactual == 0.0
    assert s["calc#1"].answer_changed is True  # "It is 40." loses the 36 the answer adds to the query
    assert s["wx#2"].answer_changed is None and s["wx#2"].reliance == pytest.approx(0.0, abs=1e-9)  # not above floor
    assert s["calc#1"].reliance_interval == (8.0, 8.0) and "orders" not in report.cost.by_stage  # causal order
    assert report.controls.placebos["inserted_as"] == "a noop tool step" and "placebos" in report.cost.by_stage
    assert s["calc#1"].next_action_recorded.kind == "tool_call" and s["calc#1"].next_action_recorded.tool == "weather"
    assert s["wx#2"].next_action_recorded.kind == "final_answer"
    assert s["calc#1"].reading.startswith("the answer copies calc#1")
    assert report.agent.reading.split("; ")[0] == "the answer copies calc#1"
    assert {"tool_unavailable", "tool_counterfactual", "policy_replay"} <= set(report.cost.by_stage)


def test_replay_turns_without_a_tool_registry_is_an_error():
    from faithaudit.errors import FaithauditError

    body = AGENT | {"audit": AGENT["audit"] | {"replay_turns": 1}}
    with pytest.raises(FaithauditError, match="needs a tool registry"):
        run_audit(AuditRequest.model_validate(body), scripted())


def test_a_label_held_in_fewer_than_80_percent_of_variants_is_unstable():
    from faithaudit.api_schemas.report import VariantReport
    from faithaudit.audits.report.stability import _source

    report = run_audit(rag(placebos=0, orders=1), scripted())
    key = by_id(report)["key"]
    variants = [
        VariantReport(kind="sampled", text=str(k), attention_top1="key", reliance_top1="key", labels={"key": label})
        for k, label in enumerate(["decisive", "decisive", "decisive", "within_noise", "supporting"])
    ]
    row = _source(key, variants)
    assert key.label == "decisive" and row.label_agreement == 0.6 and row.stable is False
    assert row.reliance_top1_rate == 1.0


def test_request_metadata_and_tags_reach_the_report():
    body = rag(placebos=0, orders=1).model_dump(mode="json", exclude_unset=True)
    body |= {"metadata": {"trace_id": "0af7651916cd43dd8448eb211c80319c"}, "tags": ["checkout"]}
    report = run_audit(AuditRequest.model_validate(body), scripted())
    assert report.tags == ["checkout"] and report.metadata == {"trace_id": "0af7651916cd43dd8448eb211c80319c"}


def test_token_texts_keep_multibyte_characters_whole():
    from faithaudit.audits.report.tokens import token_texts

    class Bytes:
        def __init__(self, pieces):
            self.pieces = pieces

        def decode(self, ids):
            return b"".join(self.pieces[i] for i in ids).decode("utf-8", "replace")

    e, ri = "é".encode(), "日".encode()
    tok = Bytes([b"caf", e[:1], e[1:], b" au", ri[:2], ri[2:]])
    texts = token_texts(tok, list(range(6)))
    assert texts == ["caf", "", "é", " au", "", "日"] and "".join(texts) == tok.decode(range(6))


def test_what_greedy_decoding_is_known_to_emit_and_when_that_settles_the_answer():
    from faithaudit.audits.answers import known_keeps_answer
    from faithaudit.audits.model.hf import greedy_known

    response, stop = [5, 6, 7], [0]
    assert greedy_known([5, 6, 7, 0], response, stop) == ((5, 6, 7), True)  # the response, then a stop token
    assert greedy_known([5, 6, 7, 9], response, stop) == ((5, 6, 7, 9), False)  # the response, then more
    assert greedy_known([5, 8, 7, 0], response, stop) == ((5, 8), False)  # differs at 8: unknown after it
    assert greedy_known([0, 6, 7, 0], response, stop) == ((), True)  # stops at once
    span = ["tarsquin"]
    assert known_keeps_answer("It is Tarsquin", span, complete=True) is True
    assert known_keeps_answer("It is Tars", span, complete=True) is False
    assert known_keeps_answer("It is Tarsquin.", span, complete=False) is True  # a finished word stays
    assert known_keeps_answer("It is Tarsquin", span, complete=False) is None  # "Tarsquinian" may follow
    assert known_keeps_answer("It is called", span, complete=False) is None  # it may still come
    assert known_keeps_answer("It is Tarsquin \ufffd", span, complete=False) is None  # a character cut in half


def test_an_uncached_builtin_model_is_resolved_once_per_process(tmp_path, monkeypatch):
    """Until a worker has cached the model, the API asks for its folder on every submit: the built-in model's
    package is found once (finding it takes the import lock), and the cache folder is looked at each time."""
    from faithaudit.audits.model import registry

    calls = []
    real = registry.resolve_model
    monkeypatch.setattr(registry, "resolve_model", lambda name: calls.append(name) or real(name))
    registry._builtin_location.cache_clear()
    name = next(iter(registry.BUILTIN_MODELS))
    try:
        assert registry.materialized_folder(name, tmp_path) is None
        assert registry.materialized_folder(name, tmp_path) is None
        assert calls == [name]
        location = real(name)
        done = tmp_path / "models" / location.cache_key
        done.mkdir(parents=True)
        (done / "COMPLETE").write_text("x")
        assert registry.materialized_folder(name, tmp_path) == done  # found as soon as a worker has written it
    finally:
        registry._builtin_location.cache_clear()
