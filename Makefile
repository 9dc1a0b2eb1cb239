# The two commands a user needs: `make research` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AAR_HOME ?= $(HOME)/.cache/aar

.PHONY: research test test-fast lint bench clean-venv

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

# The edit-test loop: the unit tests of the core, contracts, server rules and LLM loop
# (under a minute on 2 cores). `make test` is the whole suite, as CI runs it.
FAST_TESTS := tests/test_core.py tests/test_events.py tests/test_layers.py \
	tests/test_llm_units.py tests/test_oversight_rules.py tests/test_reference_formats.py \
	tests/test_server_units.py tests/test_tool_decl.py
test-fast: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q $(FAST_TESTS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python bench/run_vanilla.py

clean-venv:
	rm -rf $(VENV)
