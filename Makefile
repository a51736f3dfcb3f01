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
# The shipped model's recipe (model/MODEL_CARD.md); recipes are defined once, in training/recipes.py
TRAIN_ARGS ?= --recipe shipped
# make retrain: a short fine-tune of INIT (the shipped model) on DATA (several: A,B or A:1,B:3)
INIT ?= model/weights
RETRAIN_ARGS ?= --recipe finetune
MODEL := build/model/model.tar.gz

.PHONY: help venv test lint typecheck validate demo model train retrain bench bench-pipeline clean

help:
	@echo "make demo      run the whole pipeline locally (moto + local Batch Transform)"
	@echo "make test      unit, moto-backed and end-to-end tests"
	@echo "make model     pack the shipped trained model into $(MODEL)"
	@echo "make train     retrain on DATA=<folder of <count>/*.jpg + labels.csv>"
	@echo "make retrain   fine-tune INIT (model/weights) on DATA=A,B (minutes on 2 cores)"
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

retrain: $(STAMP)
	$(PY) -m training.train --data $(DATA) --init-from $(INIT) --out build/retrain $(RETRAIN_ARGS)

demo: $(STAMP) $(MODEL)
	$(PY) -m local.demo --model $(MODEL) --server $(SERVER) $(if $(IMAGES),--images $(IMAGES)) $(if $(N),--count $(N))

bench: $(STAMP) $(MODEL)
	$(PY) -m model.bench --model $(MODEL)

bench-pipeline: $(STAMP) $(MODEL)
	$(PY) -m local.bench --model $(MODEL) --count 2000

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
