# mediagate: `make dev` runs the embedded stack with a demo job; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/mediagate dev --demo $(DEV_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app workers storage providers tests migrations bench
	$(BIN)/ruff format --check app workers storage providers tests migrations bench

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy bench

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

# Speed and memory figures, each against a baseline measured in the same run (not part of `test`).
bench: $(STAMP)
	$(BIN)/python bench/multipart_rss.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mediagate out .pytest_cache .mypy_cache .ruff_cache
