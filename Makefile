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

# A wrong IMAGES is refused in one line before the install and the model packing (local.demo checks the rest).
ifneq ($(and $(filter demo,$(MAKECMDGOALS)),$(IMAGES)),)
ifeq ($(wildcard $(IMAGES)),)
$(error IMAGES=$(IMAGES): no such file or folder; give a photo, a folder of photos, or a folder of <bin>/<photo> subfolders, or leave IMAGES empty for generated photos)
endif
endif
# The same model plus model.onnx, for the local model server and benchmarks (ONNX Runtime is
# installed here; SageMaker's PyTorch container has none, so the deployed artifact leaves it out).
MODEL_LOCAL := build/model/model-local.tar.gz

.PHONY: help venv test lint typecheck validate demo model train bench bench-pipeline clean

help:
	@echo "make demo      run the whole pipeline locally (moto + local Batch Transform)"
	@echo "make test      unit, moto-backed and end-to-end tests"
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

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy functions model training local tests

validate: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml

$(MODEL): $(STAMP) $(wildcard model/weights/*) $(wildcard model/*.py)
	$(PY) -m model.package --out $(MODEL)

$(MODEL_LOCAL): $(STAMP) $(wildcard model/weights/*) $(wildcard model/*.py)
	$(PY) -m model.package --out $(MODEL_LOCAL) --onnx

model: $(MODEL)

train: $(STAMP)
	$(PY) -m training.train --data $(DATA) --out build/train $(TRAIN_ARGS)

demo: $(STAMP) $(MODEL_LOCAL)
	$(PY) -m local.demo --model $(MODEL_LOCAL) --server $(SERVER) $(if $(IMAGES),--images $(IMAGES)) $(if $(N),--count $(N))

bench: $(STAMP) $(MODEL_LOCAL)
	$(PY) -m model.bench --model $(MODEL_LOCAL)

bench-pipeline: $(STAMP) $(MODEL_LOCAL)
	$(PY) -m local.bench --model $(MODEL_LOCAL) --count 2000

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
