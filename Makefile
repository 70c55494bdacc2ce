# mediagate: `make dev` runs the embedded stack with a demo job; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.8
UV := $(BIN)/uv

.PHONY: help dev test test-fast pgbouncer chromium lint typecheck install lock lock-check uv bench bench-metrics bench-submit bench-worker bench-latency bench-sse bench-multipart bench-batch wrk clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

# Installs exactly what uv.lock pins: every package, dev tools included, each checked against its
# hash; `--locked` refuses to install when pyproject.toml and the lock disagree; bytecode is
# compiled at install (as pip does), since PYTHONDONTWRITEBYTECODE may be set. uv itself is
# pinned here (pip only bootstraps it into the venv).
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra dev --extra speech --inexact --compile-bytecode --quiet
	touch $(STAMP)

uv: $(UV)

lock: $(UV)  ## refresh uv.lock after editing pyproject.toml (LOCK_ARGS=--upgrade: newest allowed)
	$(UV) lock $(LOCK_ARGS)

lock-check: $(UV)  ## fail when pyproject.toml and uv.lock disagree (part of `test`)
	$(UV) lock --check

install: $(STAMP)  ## create .venv and install mediagate with its dev tools

dev: $(STAMP)  ## install, then run API + worker on SQLite with a demo job (make dev DEV_ARGS=...)
	$(BIN)/mediagate dev --demo $(DEV_ARGS)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check app workers storage providers tests migrations bench
	$(BIN)/ruff format --check app workers storage providers tests migrations bench

typecheck: $(STAMP)  ## mypy --strict
	$(BIN)/mypy
	$(BIN)/mypy bench

# Our own modules are compiled once for the run, not once per process the tests start (this
# machine sets PYTHONDONTWRITEBYTECODE; __pycache__ is git-ignored). The suite runs in
# TEST_WORKERS processes (pytest-xdist; a test waits on servers and subprocesses much of its
# time, so two processes keep two cores busy); each process has its own databases, Redis
# namespaces, S3 server and emulators. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: lock-check $(STAMP) pgbouncer chromium lint typecheck  ## install, then ruff, mypy and the whole test suite (what CI runs)
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal

# The dashboard's tests drive Debian's chromium through Playwright's Python API (Playwright's own
# browser download does not work here).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The PgBouncer test runs Debian's pgbouncer (transaction mode, started by the test itself).
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
		(apt-get update -qq && apt-get install -y -qq pgbouncer)

# Seconds, no servers: pure logic and the services in process (SQLite, memory store). For every save.
test-fast: $(STAMP)  ## unit and in-process service tests, no servers (seconds)
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/services

# Speed and memory figures, each against a baseline measured in the same run (not part of `test`);
# each run is recorded in bench/results/ and docs/benchmarks.md rendered from the records.
# One at a time: `make bench-submit BENCH_ARGS="--seconds 5"`. The submit benchmark drives load
# with wrk (Debian's package, installed here when missing).
bench: bench-submit bench-worker bench-latency bench-sse bench-multipart bench-metrics bench-batch  ## every benchmark, each against a baseline of the same run

wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

bench-submit: $(STAMP) wrk
	$(BIN)/python -m bench.record submit -- $(BIN)/python -m bench.submit $(BENCH_ARGS)

bench-worker: $(STAMP)
	$(BIN)/python -m bench.record worker -- $(BIN)/python -m bench.worker $(BENCH_ARGS)

bench-latency: $(STAMP)
	$(BIN)/python -m bench.record latency -- $(BIN)/python -m bench.latency $(BENCH_ARGS)

bench-sse: $(STAMP)
	$(BIN)/python -m bench.record sse -- $(BIN)/python -m bench.sse_fanout $(BENCH_ARGS)

bench-multipart: $(STAMP)
	$(BIN)/python -m bench.record multipart -- $(BIN)/python -m bench.multipart_rss $(BENCH_ARGS)

bench-batch: $(STAMP)
	$(BIN)/python -m bench.record batch -- $(BIN)/python -m bench.batch_rss $(BENCH_ARGS)

bench-metrics: $(STAMP)
	$(BIN)/python -m bench.record metrics -- $(BIN)/python -m bench.request_metrics $(BENCH_ARGS)

clean:  ## remove .venv, .mediagate, out and caches
	rm -rf $(VENV) .mediagate out .pytest_cache .mypy_cache .ruff_cache
