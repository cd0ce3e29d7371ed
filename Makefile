# The two commands a newcomer types: `make demo` and `make test`.
# Each creates or refreshes .venv when pyproject.toml or constraints.txt changed, then runs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-unit lint install system-deps clean bench bench-quick

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/raypipe demo

system-deps:
	@bash scripts/install-system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check raypipe tests benchmarks
	$(BIN)/ruff format --check raypipe tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

# Unit tests run in processes of their own: the integration tests' session-scoped Ray runtime
# must not be up while code that runs in-process is tested. Two pytest workers each: most of
# an integration test's time is Ray and subprocesses starting, which overlap well on 2 CPUs;
# `--dist loadfile` keeps a module's tests (and its module-scoped cluster) on one worker, and
# each worker shares one Ray runtime between its tests. The slowest tests are listed at the
# end of each run: the suite's budget is 15 minutes on 2 CPUs.
PYTEST_WORKERS ?= 2
test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest tests/unit -n $(PYTEST_WORKERS) --durations=5
	$(BIN)/python -m pytest tests/integration tests/e2e -n $(PYTEST_WORKERS) --dist loadfile --durations=15

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

# Every benchmark at full size, one after another (an hour or more on 2 cores); rewrites
# benchmarks/README.md's figures.
bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/run_all.py

# Every benchmark at smoke size (CI runs it after `make test`); prints the table, leaves the
# README as it is.
bench-quick: $(STAMP) system-deps
	$(BIN)/python benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) raypipe-data
