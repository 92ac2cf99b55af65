PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck layers pytest bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

demo: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/watcherd demo

test: $(STAMP) lint typecheck layers pytest

lint: $(STAMP)
	$(BIN)/ruff check watcherd tests bench
	$(BIN)/ruff format --check watcherd tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	WATCHERD_SOAK=1 $(BIN)/pytest -q tests/battery

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
