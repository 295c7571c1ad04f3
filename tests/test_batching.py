"""Batched scoring over a shared cached prefix equals the sequential path on the real model (within 1e-3 nats, at
batch sizes 1, 2 and 7), for keep-masks and for pairs with different prompts and targets; a whole audit at batch
size 7 reproduces the golden report. Device and dtype settings fail at start-up, naming the variable; a 16-bit
model runs its LM head in float32."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cases import FICTIONAL_DOC, FICTIONAL_QUERY, FICTIONAL_RESPONSE, FILLER_DOCS, ROOT, make_request
from test_golden_reports import GOLDEN, differences

from faithaudit.audits.model.device import Compute
from faithaudit.audits.prompt.rag import build_layout
from faithaudit.audits.scoring import logprobs, score_full_context, score_masks, score_pairs

NATS = 1e-3


@pytest.fixture
def batch_size(model):
    """Set the shared model's batch size for one test, restoring it after."""
    before = model.compute

    def set_size(size: int | str) -> None:
        model.compute = Compute(device=before.device, dtype=before.dtype, batch_size=size)

    yield set_size
    model.compute = before


@pytest.fixture(scope="module")
def demo(model):
    request = make_request(FILLER_DOCS[:3] + [FICTIONAL_DOC] + FILLER_DOCS[3:5], FICTIONAL_QUERY, FICTIONAL_RESPONSE)
    layout = build_layout(request, model)
    response = model.encode(FICTIONAL_RESPONSE)
    return layout, response, score_full_context(model, layout, response, with_attention=False)


def test_batched_masks_equal_sequential(model, demo, batch_size):
    layout, response, base = demo
    n = layout.num_sources
    masks = np.vstack([~np.eye(n, dtype=bool), np.random.default_rng(0).random((8, n)) < 0.5])  # LOO + random
    results, passes = {}, {}
    for size in (1, 2, 7):
        batch_size(size)
        before = model.counter.forward_passes
        results[size] = logprobs(score_masks(model, layout, response, masks, base=base))
        passes[size] = model.counter.forward_passes - before
    assert np.abs(results[2] - results[1]).max() < NATS
    assert np.abs(results[7] - results[1]).max() < NATS
    assert passes == {1: len(masks), 2: len(masks), 7: len(masks)}  # a batch of B rows counts B passes
    assert np.ptp(results[1]) > 10 * NATS  # the contexts score differently: equality is not a constant's


def test_batched_pairs_with_different_prompts_and_targets(model, demo, batch_size):
    layout, response, base = demo
    other = model.encode(" The answer is not in the documents.")
    pairs = [(layout.without(i).ids, response if i % 2 else other) for i in range(layout.num_sources)] + [
        (layout.build().ids, other)
    ]  # a target longer than the response, then the full context
    batch_size(1)
    sequential = [s.token_logprobs for s in score_pairs(model, pairs, base=base)]
    batch_size(7)
    batched = [s.token_logprobs for s in score_pairs(model, pairs, base=base)]
    for seq, bat in zip(sequential, batched, strict=True):
        assert seq.shape == bat.shape
        assert abs(seq.sum() - bat.sum()) < NATS
        assert np.abs(seq - bat).max() < NATS


@pytest.mark.skipif(bool(os.environ.get("FAITHAUDIT_DEFAULT_MODEL")), reason="the golden report is the real model's")
def test_audit_at_batch_size_7_reproduces_the_golden_report(model, batch_size):
    from cases import golden_request

    from faithaudit.audits.run import audit_request
    from faithaudit.tools import registry_for

    batch_size(7)
    report = audit_request(golden_request("rag"), model, tools=registry_for).model_dump(mode="json")
    expected = json.loads((GOLDEN / "rag.json").read_text())
    assert report["controls"]["compute"]["batch_size"] == 7
    for skip in ("cost", "controls"):  # tokens fed differ (a batch shares only its common prefix)
        expected.pop(skip)
        report.pop(skip)
    assert [s["label"] for s in report["sources"]] == [s["label"] for s in expected["sources"]]
    assert differences(expected, report, tolerance=NATS) == []


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "faithaudit.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FAITHAUDIT_DEVICE": "gpu"}, "FAITHAUDIT_DEVICE"),
        ({"FAITHAUDIT_DTYPE": "int8"}, "FAITHAUDIT_DTYPE"),
        ({"FAITHAUDIT_BATCH_SIZE": "0"}, "FAITHAUDIT_BATCH_SIZE"),
        ({"FAITHAUDIT_SERVED_MODELS": " , "}, "FAITHAUDIT_SERVED_MODELS"),
        ({"FAITHAUDIT_SHARD_PASSES": "-1"}, "FAITHAUDIT_SHARD_PASSES"),
        ({"FAITHAUDIT_SHARD_PASSES": "many"}, "FAITHAUDIT_SHARD_PASSES"),
        ({"FAITHAUDIT_DB_POOL_SIZE": "0"}, "FAITHAUDIT_DB_POOL_SIZE"),
    ],
)
def test_bad_compute_setting_is_a_start_up_error(env, named):
    done = _cli("models", **env)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", [("worker",), ("audit", "examples/fictional_fact.json")])
def test_cuda_where_none_exists_stops_the_command(command):
    done = _cli(*command, FAITHAUDIT_DEVICE="cuda")
    assert done.returncode == 2, done.stderr
    assert "FAITHAUDIT_DEVICE=cuda" in done.stderr and "no CUDA device" in " ".join(done.stderr.split())


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_scores_equal_cpu_scores(model, demo, dtype):
    """The test model loaded again on the GPU: float32 within 1e-3 nats of the CPU path; bfloat16's error against
    the CPU's float32 at most 3x bfloat16's own error on the CPU, on the same masks. bfloat16's error depends on the
    kernels: on the GPU check's random model (scores of ~-100 nats) the H200's was 0.9x and 2.1x the CPU's in two
    builds (max 2.5 and 3.9 nats), so no fixed share of the log-prob is a bar."""
    from faithaudit.audits.model.hf import HFModelAdapter

    layout, response, _ = demo
    folder = model.model.config.name_or_path
    gpu = HFModelAdapter.from_pretrained(folder, compute=Compute(device="cuda", dtype=dtype, batch_size=4))
    base = score_full_context(gpu, layout, response, with_attention=False)
    n = layout.num_sources
    masks = np.vstack([~np.eye(n, dtype=bool), np.ones((1, n), dtype=bool)])
    cpu = logprobs(score_masks(model, layout, response, masks, base=None))
    cuda = logprobs(score_masks(gpu, layout, response, masks, base=base))
    tolerance = NATS
    if dtype == "bfloat16":
        cpu_bf16 = HFModelAdapter.from_pretrained(folder, compute=Compute(device="cpu", dtype=dtype, batch_size=1))
        own = logprobs(score_masks(cpu_bf16, layout, response, masks, base=None))
        tolerance = 3 * np.abs(own - cpu).max() + NATS
    assert np.abs(cuda - cpu).max() < tolerance


def test_bfloat16_model_scores_through_a_float32_head(tmp_path):
    """A tiny random Llama saved and loaded in bfloat16: the LM head gives float32 logits, the report's compute
    controls say so, and its log-probs stay near the float32 model's (bf16 weights, not bf16 logits)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from faithaudit.audits.model.hf import HFModelAdapter
    from faithaudit.audits.report.controls import compute_controls

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    vocab = {f"w{i}": i for i in range(64)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="w1", unk_token="w0").save_pretrained(tmp_path)
    full = HFModelAdapter.from_pretrained(tmp_path, compute=Compute(dtype="float32"))
    half = HFModelAdapter.from_pretrained(tmp_path, compute=Compute(dtype="bfloat16"))
    head = half.model.get_output_embeddings()
    hidden = torch.zeros(1, 3, 32, dtype=torch.bfloat16)
    assert head(hidden).dtype == torch.float32
    prompt, response = list(range(2, 30)), [5, 9, 11, 40]
    exact = full.score(prompt, response)[0].logprob
    approx = half.score(prompt, response)[0].logprob
    assert exact != approx and abs(exact - approx) < 0.05 * abs(exact)
    controls = compute_controls(half)
    assert (controls.dtype, controls.lm_head_dtype, controls.logprob_dtype) == ("bfloat16", "float32", "float64")


def test_batched_greedy_decode_equals_one_prompt_at_a_time(model, demo):
    """Placebo-like and leave-one-out prompts of different lengths, some cached to their last token and some
    sharing only a prefix with the full context, decode token for token as ``generate`` does one at a time."""
    layout, response, base = demo
    prompts = [layout.without(i).ids for i in (0, 3)] + [layout.build().ids]
    reuses = [base.cache, base.cache, None]
    own = [model.score(p, response, keep_cache=True)[1] for p in prompts[:1]]  # a prompt's own scored pass
    prompts.append(prompts[0])
    reuses.append(own[0])
    budget = 12
    one_by_one = [model.generate(p, max_new_tokens=budget, reuse=r) for p, r in zip(prompts, reuses, strict=True)]
    before = model.counter.snapshot()
    batched = model.generate_batch(prompts, max_new_tokens=budget, reuses=reuses)
    passes, _ = (a - b for a, b in zip(model.counter.snapshot(), before, strict=True))
    assert batched == one_by_one
    assert {len(t) for t in batched} != {0} and len({tuple(t) for t in batched}) > 1  # real, differing answers
    assert passes <= 3 + sum(len(t) + 1 for t in batched)  # 3 prompts need a pass of their own; stopped rows leave
    budgets = [3, budget, 0, 7]  # a budget per row: each row as ``generate`` with its own
    own_budget = [
        model.generate(p, max_new_tokens=n, reuse=r) if n else []
        for p, n, r in zip(prompts, budgets, reuses, strict=True)
    ]
    assert model.generate_batch(prompts, max_new_tokens=budgets, reuses=reuses) == own_budget
    assert [len(t) for t in own_budget] == [3, len(one_by_one[1]), 0, min(7, len(one_by_one[3]))]
    assert model.generate_batch(prompts[:1], max_new_tokens=0, reuses=reuses[:1]) == [[]]


def test_auto_batch_size_is_bounded_by_memory_and_by_the_work_of_a_call():
    """The rule alone (no GPU needed), with the shapes the GPU check timed on an H200 (143,771 MiB): the fastest
    batch was 16 rows for 135M parameters in bfloat16, 4 in float32, and 1 to 4 for 1.2B parameters."""
    from faithaudit.audits.model.device import AUTO_MAX_BATCH, auto_rows, row_flop

    h200 = 143771 * 2**20
    row = 100 * 2**20  # ~100 MiB of KV cache and activations per row: memory never binds for these shapes

    def rows(parameters: int, dtype: str, memory: int = h200, per_row: int = row) -> int:
        flop = row_flop(parameters=parameters, tokens=1790)
        return auto_rows("cuda", total_memory=memory, bytes_per_row=per_row, flop_per_row=flop, dtype=dtype)

    assert rows(134_515_008, "bfloat16") == 16
    assert rows(134_515_008, "float32") == 4
    assert rows(1_235_814_400, "bfloat16") == rows(1_235_814_400, "float32") == 1
    assert rows(8_030_261_248, "bfloat16") == 1  # Llama-3.1-8B: one row per call fills the GPU
    assert rows(1_000_000, "bfloat16") == AUTO_MAX_BATCH  # a tiny model: the fixed cap
    assert rows(134_515_008, "bfloat16", per_row=h200 // 16) == 4  # memory binds: a quarter of the device
    assert auto_rows("cpu", total_memory=h200, bytes_per_row=row, flop_per_row=1.0, dtype="bfloat16") == 1


def test_the_cache_argument_takes_the_name_the_installed_transformers_uses():
    """transformers 5.17 takes ``past_key_values`` and drops an unknown ``cache=`` into ``**kwargs`` unread (the
    GPU check's machine has 5.17); newer releases take ``cache``. Each forward's own signature decides."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    from faithaudit.audits.model.cache_names import (
        CacheArgumentError,
        cache_kwargs,
        check_cache_argument,
        returned_cache,
    )

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs): ...

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs): ...

    class Neither:
        def forward(self, input_ids=None, **kwargs): ...

    marker = object()
    with pytest.raises(CacheArgumentError, match="Neither.forward takes neither `cache` nor `past_key_values`"):
        check_cache_argument(Neither())
    assert cache_kwargs(Old(), marker) == {"past_key_values": marker}
    assert cache_kwargs(New(), marker) == {"cache": marker}
    assert returned_cache({"past_key_values": marker}) is returned_cache({"cache": marker}) is marker
    field = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
    assert returned_cache(CausalLMOutputWithPast(**{field: marker})) is marker  # the installed output class
