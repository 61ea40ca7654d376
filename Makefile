# Entry points of CONTRACT §2. Everything runs from .venv, which these targets create
# and (re)install whenever pyproject.toml changes; .data (the dev server's database)
# is never touched here.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.DEFAULT_GOAL := run
.PHONY: run test install lint fmt typecheck unit histories bench bench-quick bench-load bench-profile bench-list bench-webhooks bench-observability bench-start clean distclean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp lives inside the venv, so a recreated venv is reinstalled too.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack

# Two processes, a file at a time each (pytest-xdist): most of the suite waits on
# servers, timers and retries, not on the CPU. `pytest <file>` alone runs serially.
test: lint typecheck
	$(BIN)/pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Re-record the replay corpus (tests/histories/); SCENARIOS="a b" records only those.
histories: $(STAMP)
	$(BIN)/python tests/histories/record.py $(SCENARIOS)

# The benchmarks also plot, so they install the `bench` extra (matplotlib) on top.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,bench]'
	touch $@

# Ours against bare Temporal on one dev server: table, bench/results/latest.json, plot,
# and "N of M targets met"; it fails when a target is missed (ARGS=--report: it does not).
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(ARGS)

# A smoke test of the bench: a short subset (about 3.5 minutes; rough figures, not
# judged) into bench/results/quick.json and quick_latency_vs_load.png (gitignored).
bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick

# Ten minutes of payments under gateway faults and worker kills; ARGS="--minutes 1" shortens it.
bench-load: $(STAMP)
	$(BIN)/python -m bench.load_held $(ARGS)

# One path under load with py-spy on the worker and the API, and Temporal's
# requests per payment; ARGS="--path sync --rate 8" picks what to drive.
bench-profile: $(BENCH_STAMP)
	$(BIN)/python -m bench.profile $(ARGS)

# A page of GET /v1/payments (first, middle, last) at 1,000 and 10,000 payments of
# one merchant: wall time and Temporal requests; bench/results/list_pages.json.
bench-list: $(STAMP)
	$(BIN)/python -m bench.list_pages $(ARGS)

# Throughput with zero, one and five webhook endpoints, and no event lost;
# bench/results/webhooks.json. ARGS="--payments 100 --rounds 2" shortens it.
bench-webhooks: $(STAMP)
	$(BIN)/python -m bench.webhooks $(ARGS)

bench-observability: $(STAMP)
	$(BIN)/python -m bench.observability $(ARGS)

# Where a 202's milliseconds go: bare start_workflow, ours from the SDK, the API in
# process, the API over HTTP; bench/results/start_cost.json.
bench-start: $(STAMP)
	$(BIN)/python -m bench.start_cost $(ARGS)

clean:
	rm -f $(STAMP) $(BENCH_STAMP)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
