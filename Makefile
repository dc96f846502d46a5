# geoseg developer and demo targets. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Use ../shared/data as the offline mirror of the sample data when it is there.
ifeq ($(origin GEOSEG_DATA_MIRROR),undefined)
ifneq ($(wildcard ../shared/data/zion/upstream),)
export GEOSEG_DATA_MIRROR := $(abspath ../shared/data)
endif
endif

.PHONY: install demo test test-all lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/geoseg data fetch zion
	$(BIN)/geoseg predict "$$($(BIN)/geoseg data fetch zion | awk '$$1 == "image" {print $$2}')" \
		--model models/zion-nlcd --out demo-output --format gpkg,shp --overwrite
	@echo "demo outputs in demo-output/: labels.tif landcover.gpkg landcover.shp quicklook.png run.json"

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu"

lint: $(STAMP)
	$(BIN)/ruff check geoseg pipelines tests benchmarks
	$(BIN)/ruff format --check geoseg pipelines tests benchmarks
	$(BIN)/mypy geoseg

format: $(STAMP)
	$(BIN)/ruff format geoseg pipelines tests benchmarks
	$(BIN)/ruff check --fix geoseg pipelines tests benchmarks

clean:
	rm -rf demo-output .pytest_cache .ruff_cache .mypy_cache
