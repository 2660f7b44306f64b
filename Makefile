# One command per job; each does its own set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TASK   ?= What is the capital of France?

.PHONY: demo test lint fmt bench redis clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

## demo: run a three-agent consensus offline (no key, no network)
demo: $(VENV)/.installed
	$(BIN)/massgen run configs/offline.yaml "$(TASK)"

## test: the whole suite (starts a Redis on 127.0.0.1:6379 if none answers)
# Bytecode written once first: where PYTHONDONTWRITEBYTECODE is set, each of the suite's
# hundreds of `python -m massgen` processes would compile every module it imports again.
# Tests run on every core (at most 4; pytest-xdist): each uses free ports, its own Redis
# prefix or redis-server and its own folders, so none depends on another's order or company.
test: $(VENV)/.installed-dev redis
	$(BIN)/python -m compileall -q massgen tests > /dev/null
	$(BIN)/pytest -q -p no:cacheprovider -n auto --maxprocesses 4

## lint: ruff and mypy
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: performance figures (see docs/performance.md)
bench: $(VENV)/.installed-dev redis
	$(BIN)/python bench/bench_run.py
	$(BIN)/python bench/bench_bus.py
	$(BIN)/python bench/bench_batch.py
	$(BIN)/python bench/bench_serve.py
	$(BIN)/python bench/bench_observability.py

redis:
	@$(BIN)/python scripts/ensure_redis.py

clean:
	rm -rf $(VENV) .massgen .pytest_cache .mypy_cache .ruff_cache
