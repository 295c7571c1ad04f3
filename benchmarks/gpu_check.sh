#!/usr/bin/env bash
# The GPU check: one script for a machine with CUDA, its own torch and no network (budget: under 6 minutes).
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT defaults to $OUT, else /tmp/gpu_check
#
# 1. Python packages the machine lacks travel as wheels in .whl/ (`make gpu-wheels` here fetches them for
#    CPython 3.12): installed into /tmp/site with --no-index, nothing else is fetched.
# 2. The project is installed with `pip install --no-deps --no-build-isolation -e .` on the machine's own torch
#    (which may differ from the pin; its version goes into the JSON).
# 3. benchmarks/gpu_check.py builds a random Llama of SmolLM2-135M's shape, runs tests/test_batching.py on the
#    GPU and against the CPU, and benchmarks/batching.py (batch sizes, bfloat16 vs float32, tokens per second),
#    and writes OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/gpu_check}}"
mkdir -p "$out"
py="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# --target packages are not on pip's own path for the editable install; the project goes on PYTHONPATH as well,
# so that a failed editable install (no setuptools, say) still leaves it importable
"$py" -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$out/pip_install.log" 2>&1 \
  || echo "pip install -e . failed (see $out/pip_install.log); using PYTHONPATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
"$py" -c "import torch, transformers, pydantic_settings; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
exec "$py" benchmarks/gpu_check.py --out "$out" "${@:2}"
