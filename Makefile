# The doors into the project: make run, make test, make lint, make bench.
# Everything installs into .venv from PyPI; the peers (DCMTK, Orthanc) come from apt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
ARGS   ?=

.PHONY: run test lint bench clean venv dev

# Debian's python3 lacks ensurepip until python3-venv is installed: install it when
# we can (root with apt), else say what is missing.
$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); \
	  else echo "'$(PYTHON) -m venv' failed: install python3-venv (Debian) and retry" >&2; exit 1; fi; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py $(wildcard native/*.c native/*.h) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml setup.py $(wildcard native/*.c native/*.h) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

venv: $(STAMP)
dev: $(DEV_STAMP)

## run: install and serve with the embedded defaults (AE ARCHIVE, port 11112, ./data)
run: $(STAMP)
	$(BIN)/archive serve $(ARGS)

## test: install the peers (DCMTK, Orthanc: apt, as root) when missing and the dev
## extras, then run the whole suite. Without root the interop tests skip instead
## (and fail under CI=true).
test: $(DEV_STAMP)
	@.ci/run peers || echo "make test: DCMTK/Orthanc missing: their interop tests skip (fail under CI=true)" >&2
	$(BIN)/python -m pytest $(ARGS)

## lint: ruff (lint + format check) and mypy --strict on archive/
lint: $(DEV_STAMP)
	$(BIN)/ruff check archive tests bench tools
	$(BIN)/ruff format --check archive tests bench tools
	$(BIN)/mypy --strict archive

## bench: C-ECHO, C-STORE ingest, C-FIND latency and C-MOVE/C-GET benchmarks side by
## side with the peers (installs DCMTK and Orthanc with apt when missing; ARGS=--quick
## for short runs; INGEST_ROUNDS=1 for one round of the ingest benchmark, not three)
INGEST_ROUNDS ?= 3
bench: $(DEV_STAMP)
	@.ci/run peers
	$(BIN)/python bench/echo.py $(ARGS)
	$(BIN)/python bench/ingest.py --rounds $(INGEST_ROUNDS) $(ARGS)
	$(BIN)/python bench/find.py $(ARGS)
	$(BIN)/python bench/retrieve.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
