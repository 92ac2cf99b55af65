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

#: pytest-xdist workers. Run one after another, the tests kept 0.45 of a core busy on
#: average (they wait on subprocesses and simulated time), so 4 workers fill 2 cores.
#: A test file is one unit of work (tests/xdistplan.py).
PYTEST_WORKERS ?= 4

pytest: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	WATCHERD_SOAK=1 $(BIN)/pytest -q tests/battery

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
