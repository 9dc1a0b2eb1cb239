# The two commands a user needs: `make research` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AAR_HOME ?= $(HOME)/.cache/aar

.PHONY: research test lint bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev,local]'
	@touch $(STAMP)

MINUTES ?= 10
research: $(STAMP)
	@$(BIN)/aar doctor --brief
	$(BIN)/aar setup
	$(BIN)/aar research --dataset sentiment --backend builtin --agents 3 --minutes $(MINUTES)

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python bench/run_vanilla.py

clean-venv:
	rm -rf $(VENV)
