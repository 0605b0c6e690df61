# Everything a fresh machine needs: `make demo` and `make test` create .venv when missing,
# install the pinned versions from constraints.txt into it, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STORE ?= demo-store
PYTEST_ARGS ?=
# the tests that write or read arrays (decoding, fuzzing and server tests do not: they run once)
BACKEND_TESTS := tests/stores tests/pipelines/test_ingest.py tests/pipelines/test_featurize.py \
	tests/pipelines/test_mixing.py tests/pipelines/test_isolation.py tests/pipelines/test_corpus_metadata.py \
	tests/test_flows.py tests/test_legacy_store.py

.PHONY: demo test test-fast test-grid lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/specstore demo --store $(DEMO_STORE)

# Every test, `slow` ones included (of the librosa parameter grid, tests/features/test_grid.py, the default
# subset: pyproject.toml's addopts deselect the `grid` marker; the full grid is `make test-grid`); then the
# store and flow tests again through zarr's own arrays path (local stores use the direct path by default:
# stores/arrays.py).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	SPECSTORE_ARRAYS=zarr $(BIN)/python -m pytest $(PYTEST_ARGS) $(BACKEND_TESTS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not grid" $(PYTEST_ARGS)

# The full librosa parameter grid: every geometry, padding, signal and option listed in the test.
test-grid: $(STAMP)
	$(BIN)/python -m pytest -m "grid or not grid" tests/features/test_grid.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf $(DEMO_STORE) demo-data .pytest_cache
