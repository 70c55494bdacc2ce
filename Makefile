# mediagate: `make dev` runs the embedded stack with a demo job; `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/mediagate dev --demo $(DEV_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app workers storage providers tests migrations
	$(BIN)/ruff format --check app workers storage providers tests migrations

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .mediagate out .pytest_cache .mypy_cache .ruff_cache
