# The single entry point. `make test` is the README's test command and what CI runs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test test-fast test-fault lint openapi bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,dev]'

# One command: install, then run API + worker on the embedded default (SQLite + embedded Valkey in ./var/).
run: install
	$(BIN)/outbox run

# One command: install, then the whole suite (unit, API, pipeline on PostgreSQL + SQLite, faults, fuzzing).
test: install
	$(BIN)/ruff check app worker tests scripts bench
	$(BIN)/mypy app worker tests
	$(BIN)/pytest -q -p no:cacheprovider

test-fault: install
	$(BIN)/pytest -q -m "fault or soak"

lint: install
	$(BIN)/ruff check app worker tests scripts bench
	$(BIN)/mypy app worker tests

openapi: install
	$(BIN)/python scripts/export_openapi.py

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)
