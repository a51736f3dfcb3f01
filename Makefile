# Bin Count — every target creates .venv and installs what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-dev

# glibc malloc keeps torch's activation buffers instead of returning them to the OS after every
# step (measured 1.5–3x faster on 2 CPU cores, see ../shared/ENGINEERING.md).
export MALLOC_MMAP_THRESHOLD_ := 2000000000
export MALLOC_TRIM_THRESHOLD_ := 4000000000
export MALLOC_TOP_PAD_ := 1000000000
export PYTHONPATH := $(CURDIR):$(CURDIR)/functions
export SAM_CLI_TELEMETRY := 0

IMAGES ?=
SERVER ?= auto
N ?=
DATA ?= ../shared/abid-train
# The shipped model's recipe (model/MODEL_CARD.md)
TRAIN_ARGS ?= --image-size 224 --epochs 14 --backbone-lr-mult 0.3 --sampler balanced --patience 5 --ema 0.997
MODEL := build/model/model.tar.gz

FN_VENV := .venv-functions
FN_STAMP := $(FN_VENV)/.installed-functions-test
# What `make test-fast` leaves out: the local pipeline end to end and everything that packs,
# trains or serves a real model (marked in tests/conftest.py); `make test` runs it all.
FAST_TESTS := not e2e and not slow

.PHONY: help venv test test-fast test-functions lint typecheck validate demo model train bench bench-pipeline clean

help:
	@echo "make demo      run the whole pipeline locally (moto + local Batch Transform)"
	@echo "make test      unit, moto-backed and end-to-end tests (what CI runs)"
	@echo "make test-fast unit and moto-backed tests, no model packing, training or e2e"
	@echo "make test-functions  the Lambda tests alone in $(FN_VENV) (functions' dependencies, no torch)"
	@echo "make model     pack the shipped trained model into $(MODEL)"
	@echo "make train     retrain on DATA=<folder of <count>/*.jpg + labels.csv>"
	@echo "make bench     serving-path throughput vs the seed-style path"
	@echo "make lint | typecheck | validate"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=25.1"
	$(PIP) install -q --group dev
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "$(FAST_TESTS)"

$(FN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(FN_VENV)
	$(FN_VENV)/bin/pip install -q --upgrade "pip>=25.1"
	$(FN_VENV)/bin/pip install -q --group functions-test
	touch $@

test-functions: $(FN_STAMP)
	$(FN_VENV)/bin/python -m pytest -q tests/functions

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy functions model training local tests

validate: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml

$(MODEL): $(STAMP) $(wildcard model/weights/*) $(wildcard model/*.py)
	$(PY) -m model.package --out $(MODEL)

model: $(MODEL)

train: $(STAMP)
	$(PY) -m training.train --data $(DATA) --out build/train $(TRAIN_ARGS)

demo: $(STAMP) $(MODEL)
	$(PY) -m local.demo --model $(MODEL) --server $(SERVER) $(if $(IMAGES),--images $(IMAGES)) $(if $(N),--count $(N))

bench: $(STAMP) $(MODEL)
	$(PY) -m model.bench --model $(MODEL)

bench-pipeline: $(STAMP) $(MODEL)
	$(PY) -m local.bench --model $(MODEL) --count 2000

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache $(FN_VENV)
