# Two commands from a fresh machine: `make demo` and `make test`.
# Both create the local virtualenv (.venv) on first use; only python3 >= 3.11 is needed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-overhead fmt clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bearerd needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,keyvault]'
	@# The keyring extra compiles PyGObject: only where GObject introspection's headers are installed.
	@if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then \
		$(BIN)/python -m pip install --quiet -e '.[test,keyvault,keyring]' \
			|| echo "note: the keyring extra did not install: the keyring tests will be skipped"; \
	else echo "note: no GObject introspection headers: the keyring tests will be skipped (README: encryption at rest)"; fi
	@touch $@

demo: $(STAMP)                 ## emulator + daemon on localhost, prints curl lines to try
	$(BIN)/bearerd demo

test: $(STAMP)                 ## the whole test suite, with coverage (two workers: most tests wait on sockets)
	$(BIN)/pytest -n 2 --cov=bearerd --cov-report=term:skip-covered

lint: $(STAMP)                 ## ruff (lint and format) + mypy --strict + hadolint
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

bench: $(STAMP)                ## bench/run.py: direct vs nginx vs Caddy vs naive proxy vs bearerd (~5 min; BENCH_ARGS=--quick: ~1 min)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-overhead: $(STAMP)       ## bench/overhead.py: CPU per request of bearerd's features over its bare HTTP core (~1 min)
	$(BIN)/python bench/overhead.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
