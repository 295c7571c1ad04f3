"""Leave-one-out through the engine equals a fresh forward on each ablated sequence, and feeds fewer tokens."""

import numpy as np
import torch
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, make_request

from faithaudit.audits.prompt.rag import build_layout
from faithaudit.audits.run import run_audit


def _naive_logprob(model, prompt_ids, response_ids) -> float:
    """A fresh forward on the exact ablated sequence, computed here without the adapter's scoring code."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.inference_mode():
        logits = model.model(input_ids=ids, use_cache=False).logits[0].double()
    logp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    return float(logp.gather(1, torch.tensor(response_ids)[:, None]).sum())


class _CountingForward:
    """Wraps the model's forward and counts the input tokens it is fed."""

    def __init__(self, module):
        self.tokens = 0
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += int(ids.numel())

    def close(self):
        self._handle.remove()


def test_leave_one_out_equals_naive_and_reuses_the_prefix(model):
    docs = FILLER_DOCS[:4] + [FICTIONAL_DOC] + FILLER_DOCS[4:9]
    req = make_request(
        docs,
        FICTIONAL_QUERY,
        FICTIONAL_RESPONSE,
        audit={"methods": ["leave_one_out"], "answer_flip_top_k": 0, "placebos": 0, "orders": 1},
    )
    counter = _CountingForward(model.model)
    try:
        report = run_audit(req, model)
    finally:
        counter.close()
    fast_tokens = counter.tokens

    layout = build_layout(req, model)
    response_ids = model.encode(FICTIONAL_RESPONSE)
    full = _naive_logprob(model, layout.build().ids, response_ids)
    naive_tokens = 0
    for i, src in enumerate(layout.sources):
        ablated = layout.without(i).ids
        naive_tokens += len(ablated) + len(response_ids)
        expected = full - _naive_logprob(model, ablated, response_ids)
        assert abs(report.sources[i].reliance - expected) < 1e-3, src.id
    naive_tokens += len(layout.build().ids) + len(response_ids)  # the naive path scores the full context too
    assert report.sources[4].reliance_rank == 1
    assert fast_tokens == report.cost.tokens_processed
    assert fast_tokens <= 0.65 * naive_tokens, (fast_tokens, naive_tokens)


def test_surrogate_targets_are_reproducible(model):
    req = make_request(
        [FILLER_DOCS[0], FICTIONAL_DOC, FILLER_DOCS[1]],
        FICTIONAL_QUERY,
        FICTIONAL_RESPONSE,
        audit={"methods": ["context_ablation"], "num_ablations": 8, "answer_flip_top_k": 0, "placebos": 0},
    )
    a, b = run_audit(req, model), run_audit(req, model)
    weights = [s.surrogate_weight for s in a.sources]
    assert weights == [s.surrogate_weight for s in b.sources]
    assert int(np.argmax(weights)) == 1
    assert a.cost.forward_passes == 1 + 2**3  # full pass + every mask (2^3 fits the budget of 8: exhaustive)
    assert a.summary.surrogate_lds_method == "cross_validation" and a.sources[1].banzhaf > 1.0


def test_random_masks_scored_with_neighbour_reuse_equal_fresh_passes(model):
    from faithaudit.audits import interventions
    from faithaudit.audits.scoring import logprobs, score_full_context, score_masks

    docs = FILLER_DOCS[:3] + [FICTIONAL_DOC] + FILLER_DOCS[3:6]
    layout = build_layout(make_request(docs, FICTIONAL_QUERY, FICTIONAL_RESPONSE), model)
    response_ids = model.encode(FICTIONAL_RESPONSE)
    base = score_full_context(model, layout, response_ids, with_attention=False)
    masks = interventions.random_keep_masks(layout.num_sources, 12, keep_probability=0.5, seed=3)
    before = model.counter.tokens_processed
    fast = logprobs(score_masks(model, layout, response_ids, masks, base=base))
    fed = model.counter.tokens_processed - before
    naive = [_naive_logprob(model, layout.build(list(m)).ids, response_ids) for m in masks]
    np.testing.assert_allclose(fast, naive, atol=1e-3)
    assert fed < sum(len(layout.build(list(m)).ids) + len(response_ids) for m in masks)


def test_placebo_flip_checks_read_off_their_own_pass_equal_regenerations(model):
    """Whether the greedy answer after a prompt keeps the answer span, as the placebos stage settles it (read off
    the pass's argmaxes where they decide it, else regenerated from that pass's own KV cache), equals what a
    regeneration feeding the prompt again says (the path it replaces), on the real model; the scores are the plain
    scorer's. The response is the model's own greedy answer, so that the full prompt is decided without decoding;
    with a placebo inserted the 135M model's answer wobbles ("...is called"), which only decoding settles."""
    from faithaudit.audits.answers import answer_span, keeps_answer
    from faithaudit.audits.decoding import generate_text
    from faithaudit.audits.placebos import placebo_prompts
    from faithaudit.audits.scoring import logprobs, score_full_context, score_pairs
    from faithaudit.audits.stages.flips import AnswerGate, known_answer, score_then_check

    layout = build_layout(make_request([FILLER_DOCS[0], FICTIONAL_DOC, FILLER_DOCS[1]], FICTIONAL_QUERY, None), model)
    response = generate_text(model, layout.build().ids, 24)
    response_ids = model.encode(response)
    base = score_full_context(model, layout, response_ids, with_attention=False)
    assert model.decode(base.score.greedy_known) == response and base.score.greedy_stops
    _, prompts = placebo_prompts(layout, model, FICTIONAL_QUERY, 3, seed=0)
    prompts = [layout.build().ids, *prompts]
    pairs = [(p, response_ids) for p in prompts]
    gate = AnswerGate(span=tuple(answer_span(response, FICTIONAL_QUERY)), margin=None, budget=len(response_ids) + 8,
                      margin_holds=True)  # fmt: skip

    def fed(fn):
        before = model.counter.tokens_processed
        out = fn()
        return out, model.counter.tokens_processed - before

    (scores, keeps), together = fed(lambda: score_then_check(model, pairs, gate, reuse=base.cache))
    plain, scored = fed(lambda: score_pairs(model, pairs, base=base))
    again, regenerated = fed(lambda: [generate_text(model, p, gate.budget, base.cache) for p in prompts])
    assert keeps == [keeps_answer(text, gate.span) for text in again] and keeps[0] is True, (keeps, again)
    knowns = [known_answer(model, s, gate.budget) for s in scores]  # the whole answer, where the pass spells it
    assert knowns[0] == again[0] and all(k is None or k == a for k, a in zip(knowns, again, strict=True)), knowns
    np.testing.assert_allclose(logprobs(scores), logprobs(plain), atol=1e-4)
    decoded = together - scored  # tokens fed to regenerate: none for the full prompt, one per step for the others
    assert decoded <= (len(prompts) - 1) * gate.budget and decoded < 0.5 * regenerated, (decoded, regenerated)


def test_attention_read_over_a_reused_prefix_equals_a_fresh_pass(model):
    """The attention baseline pass reuses the full context's cache up to the first source: on a trace whose
    audited outputs come late, the attention per source read over that cache equals a fresh pass's, and the
    prefix is not fed again."""
    from cases import load_example

    from faithaudit.api_schemas import AuditRequest
    from faithaudit.audits.prompt.layout import request_layout
    from faithaudit.audits.scoring import score_full_context, score_prompt

    body = load_example("agent_case.json")
    steps = AuditRequest.model_validate(body).pipeline.trace(query="").auditable()
    body["pipeline"]["audit_steps"] = steps[-1:]  # the last output only: most of the trace comes before it
    layout, given, _ = request_layout(AuditRequest.model_validate(body), model)
    response = model.encode(given)
    base = score_full_context(model, layout, response, with_attention=True)
    fill = {0: [model.encode(" the")[0]] * (base.prompt.spans[0][1] - base.prompt.spans[0][0])}
    prompt = layout.build(replace=fill)
    fresh_score, _, fresh = score_prompt(model, prompt, response, 1, with_attention=True)
    before = model.counter.snapshot()[1]
    reused_score, _, reused = score_prompt(model, prompt, response, 1, with_attention=True, reuse=base.cache)
    fed = model.counter.snapshot()[1] - before
    assert fed == len(prompt.ids) + len(response) - base.prompt.spans[0][0] < len(prompt.ids) // 2
    assert np.allclose(reused.by_layer, fresh.by_layer, atol=1e-5)
    assert abs(reused_score.logprob - fresh_score.logprob) < 1e-3


def test_a_sliding_window_cache_is_reused_only_while_it_holds_every_position(model):
    """A sliding-window layer keeps only its last W - 1 keys (transformers' DynamicCache): a cache from a pass longer
    than that must not be sliced for a later pass's prefix. Tiny random Mistral, window 8: a pass of 23 positions
    gives a cache nothing reuses, and a pass reusing it equals a fresh one; a pass of 6 positions stays reusable."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from faithaudit.audits.model.hf import HFModelAdapter

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "mistral", vocab_size=len(model.tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, sliding_window=8,
    )  # fmt: skip
    tiny = HFModelAdapter(
        model=AutoModelForCausalLM.from_config(config), tokenizer=model.tokenizer, name="tiny", revision="random"
    )
    ids = [int(t) for t in np.random.default_rng(0).integers(100, 1000, 23)]
    prompt, response = ids[:20], ids[20:]
    _, long_cache = tiny.score(prompt, response, keep_cache=True)
    assert long_cache.ids == ()  # its sliding layers hold only the last 7 positions
    changed = prompt[:15] + [7] + prompt[16:]
    fresh, _ = tiny.score(changed, response)
    reused, _ = tiny.score(changed, response, reuse=long_cache)
    assert np.allclose(reused.token_logprobs, fresh.token_logprobs, atol=1e-5)
    _, short_cache = tiny.score(ids[:4], ids[4:6], keep_cache=True)
    assert short_cache.ids == tuple(ids[:6])
