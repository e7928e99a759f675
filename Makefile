# Set-up and common tasks. Each target creates .venv from the project's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= all

.PHONY: demo test test-slow lint bench clean

$(BIN)/.installed-$(EXTRAS): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/python -m idf_jax.runtime.demo

# Two workers, one test file per worker at a time (module fixtures are built once).
test: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-slow: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/python -m pytest -q -m slow

# Format, lint, architecture contracts (import-linter) and types (pyright, basic mode).
lint: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pyright

bench: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/python benchmarks/bench_samplers.py

clean:
	rm -rf $(VENV) .pytest_cache
