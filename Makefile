# One entry point for set-up and checks. `make test` creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.td-pipeline-installed

.PHONY: install test lint typecheck validate unit e2e protos demo bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,sandbox]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check td_pipeline td_pipeline_tests scripts
	$(VENV)/bin/ruff format --check td_pipeline td_pipeline_tests scripts

typecheck: install
	$(VENV)/bin/mypy td_pipeline

# The fast tier: everything but the end-to-end tests and the in-process pipeline runs (real
# NATS and gRPC servers on loopback where a layer needs them, no Dagster run). Under a minute.
unit: install
	$(PY) -m pytest -n 2 -m "not e2e and not pipeline"

# The end-to-end tier: real daemons, and the jobs run in process against the local fleet; three
# test files at a time (they spend much of their time waiting, so they overlap well), the
# longest first (`runs_for` on each file; xdist would otherwise order them by test count).
e2e: install
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder -m "e2e or pipeline" --durations=15

# The code location loads (with whatever settings the environment has; bad ones do not stop it).
validate: install
	$(VENV)/bin/dagster definitions validate -m td_pipeline.orchestration.definitions

test: lint typecheck validate unit e2e

# Regenerate the committed protobuf code after editing protos/ (a test checks they match).
protos: install
	$(PY) scripts/generate_protos.py

# The whole pipeline on this machine: fleet, Dagster daemon and UI (127.0.0.1:3000), every
# sample story derived; the UI stays up until Ctrl-C.
demo: install
	$(VENV)/bin/td-pipeline demo

bench: install
	$(PY) -m td_pipeline_tests.benchmarks.bench_proposal

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
