# `make demo` and `make test` install first when needed (README's first two commands).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser bench-tools demo test lint format bench bench-scale snapshot settings-doc clean-state

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The dashboard test drives Debian's Chromium (never a browser downloaded by a test tool).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

demo: install
	$(BIN)/stock-assets demo

test: install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# bench/api_load.py drives Debian's wrk; bench/daily_cycle.py profiles with py-spy.
bench-tools: install
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q wrk; }
	@test -x $(BIN)/py-spy || $(BIN)/pip install -q "py-spy>=0.3"

bench: install bench-tools
	$(BIN)/python bench/backfill_vs_floor.py
	$(BIN)/python bench/io_write.py
	$(BIN)/python bench/retrain_group.py
	$(BIN)/python bench/daily_cycle.py
	$(BIN)/python bench/api_load.py
	$(BIN)/python bench/concurrency.py
	$(BIN)/python bench/intervals.py

# How far one machine goes: 5,000 synthetic tickers (about 30 min on 2 cores).
bench-scale: install bench-tools
	BENCH_SCENARIOS=scale BENCH_PROFILE=1 $(BIN)/python bench/daily_cycle.py
	BENCH_API_TICKERS=5000 $(BIN)/python bench/api_load.py

# Rewrite the committed graph snapshot after a deliberate change to the asset graph.
snapshot: install
	UPDATE_GRAPH_SNAPSHOT=1 $(BIN)/pytest -q stock_assets_tests/defs/test_graph_snapshot.py

clean-state:
	-$(BIN)/stock-assets db stop
	rm -rf .stock_assets

# The README's configuration table, generated from stock_assets/settings.py.
settings-doc: install
	$(BIN)/python -m stock_assets.settings
