"""The mechanism hooks on tiny randomly initialised models of every architecture in the table (shapes and
self-checks only: random weights prove the hooks, not the science). The response is the model's own greedy
continuation, so that corrupting the source lowers its log-probability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faithaudit.audits.mechanism import readout
from faithaudit.audits.mechanism.architectures import ARCHITECTURES
from faithaudit.audits.mechanism.patching import Patcher, prefix_cache
from faithaudit.audits.mechanism.trace import Inputs, trace_source

MOE = {"num_experts": 4, "num_experts_per_tok": 2}
EXTRA = {
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8},
    "gemma3_text": {"head_dim": 8},
    "qwen3": {"head_dim": 8},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": MOE | {"moe_intermediate_size": 16, "shared_expert_intermediate_size": 16},
    "qwen3_moe": MOE | {"moe_intermediate_size": 16, "head_dim": 8},
    "olmoe": MOE,
}
PREFIX, SOURCE, REST, RESPONSE = 8, 8, 18, 6


def tiny(model_type: str, **overrides):
    from transformers import AutoConfig, AutoModelForCausalLM

    from faithaudit.audits.provenance import register_probe_attention

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type, vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.3,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, **(EXTRA.get(model_type, {}) | overrides),
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(config, attn_implementation=register_probe_attention()).eval()


CASES = [(m, {}) for m in sorted(ARCHITECTURES)] + [("qwen2_moe", {"mlp_only_layers": [1]})]  # a dense layer too


@pytest.mark.parametrize(("model_type", "overrides"), CASES, ids=[m + ("-mixed" if o else "") for m, o in CASES])
def test_hooks_pass_the_self_checks_on_a_tiny_model(model_type, overrides):
    from faithaudit.audits.mechanism.architectures import arch_for

    model = tiny(model_type, **overrides)
    ids = [int(t) for t in np.random.default_rng(0).integers(3, 64, PREFIX + SOURCE + REST)]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=RESPONSE, do_sample=False, pad_token_id=0)
    response = out[0, len(ids) :].tolist()
    swap = [int(t) for t in np.random.default_rng(1).integers(3, 64, SOURCE)]
    clean = tuple(ids[PREFIX:] + response)
    inputs = Inputs(
        clean_ids=clean,
        corrupted_ids=tuple(swap) + clean[SOURCE:],
        source_len=SOURCE,
        prefix_len=PREFIX,
        loo_ids=tuple(ids[PREFIX + SOURCE :] + response),
    )
    patcher = Patcher(model, arch_for(model_type), prefix_cache(model, ids[:PREFIX]), response_len=len(response))
    t = trace_source(patcher, inputs, head_layers=2, noise_floor=None, loo=None, min_gap=0.0)
    assert t.skipped_reason is None, t.skipped_reason

    def frac(x):
        return readout.recovered(x, t.clean, t.corrupted)

    assert frac(t.span)[0] == pytest.approx(1.0, abs=1e-4)  # the embeddings: the corruption undone
    assert frac(t.all_attention_after) == pytest.approx(1.0, abs=0.02)
    assert abs(t.unchanged - t.clean) <= 1e-4
    for curve in (t.span, t.attention_at, t.mlp_at, t.attention_after, t.mlp_after):
        assert curve.shape == (4,) and np.isfinite(curve).all()
    assert len(t.heads) == 2 * 4 and all(0.0 <= h[4] <= 1.0 for h in t.heads)
    zero_heads = patcher.run(clean, [])  # nothing edited: the clean log p again
    assert zero_heads == pytest.approx(t.clean, abs=1e-4)
    moe = ARCHITECTURES[model_type].router is not None
    assert (t.router is not None) == moe
    if moe:
        assert t.router.layers == ([0, 2, 3] if overrides else [0, 1, 2, 3]) and all(
            0 <= c <= 1 for c in t.router.changed_share
        )
        assert all(
            abs(sum(s) - 1) < 1e-5 and len(s) == 4 for s in t.router.expert_share + t.router.expert_share_without
        )
        assert t.router.expert_drops and all(0 <= e < 4 for _, e, _ in t.router.expert_drops)


def test_noise_corruption_is_seeded_and_passes_the_self_checks():
    from faithaudit.audits.mechanism.architectures import arch_for
    from faithaudit.audits.mechanism.patching import embedding_noise

    model = tiny("llama")
    ids = [int(t) for t in np.random.default_rng(0).integers(3, 64, PREFIX + SOURCE + REST)]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=RESPONSE, do_sample=False, pad_token_id=0)
    clean = tuple(ids[PREFIX:] + out[0, len(ids) :].tolist())
    spec = arch_for("llama")
    noise = embedding_noise(model, spec, SOURCE, seed=7)
    assert torch.equal(noise, embedding_noise(model, spec, SOURCE, seed=7))
    assert not torch.equal(noise, embedding_noise(model, spec, SOURCE, seed=8))
    sd = float(model.get_submodule(spec.embed).weight.detach().float().std())
    assert float(noise.std()) == pytest.approx(3 * sd, rel=0.2)
    patcher = Patcher(model, spec, prefix_cache(model, ids[:PREFIX]), response_len=RESPONSE)
    patcher.noise = (slice(0, SOURCE), noise)
    inputs = Inputs(clean_ids=clean, corrupted_ids=clean, source_len=SOURCE, prefix_len=PREFIX)
    t = trace_source(patcher, inputs, head_layers=1, noise_floor=None, loo=None, min_gap=0.0)
    assert t.skipped_reason is None and t.corrupted < t.clean
    assert readout.recovered(t.span, t.clean, t.corrupted)[0] == pytest.approx(1.0, abs=1e-4)
    assert readout.recovered(t.all_attention_after, t.clean, t.corrupted) == pytest.approx(1.0, abs=0.02)
    assert patcher.run(clean) == pytest.approx(t.clean, abs=1e-4)  # the noise applies to corrupted runs only
