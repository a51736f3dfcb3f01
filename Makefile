# Bin Count — every target creates .venv and installs what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-dev
# The light install (`make demo`, `make up`, `bincount`): the local stack on ONNX Runtime, no torch.
# The full one ($(STAMP): training, `make model`, the tests) is a superset and marks both.
DEMO_STAMP := $(VENV)/.installed-demo
# pip's progress on a terminal, one line per package otherwise (CI logs)
PIP_INSTALL := $(PIP) install $(shell [ -t 2 ] && echo --progress-bar on || echo --progress-bar off)
# SAM CLI and AWS CLI in their own virtualenv: aws-sam-cli pins many packages.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM_CLI_VERSION ?= 1.170.0
# checkov in its own virtualenv too (it pins many packages), run offline: no Prisma Cloud download
# (--skip-download, BC_SKIP_MAPPING) and no PyPI version check (CKV_SKIP_PACKAGE_UPDATE_CHECK).
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION ?= 3.3.30
export BC_SKIP_MAPPING := TRUE
export CKV_SKIP_PACKAGE_UPDATE_CHECK := TRUE
CONFIG_ENV ?= dev

# glibc malloc keeps torch's activation buffers instead of returning them to the OS after every
# step (measured 1.5–3x faster on 2 CPU cores). The Python home of
# these values is common/malloc.py (MALLOC_ENV); tests/common/test_malloc.py keeps them equal.
export MALLOC_MMAP_THRESHOLD_ := 2000000000
export MALLOC_TRIM_THRESHOLD_ := 4000000000
export MALLOC_TOP_PAD_ := 1000000000
export PYTHONPATH := $(CURDIR):$(CURDIR)/functions
export SAM_CLI_TELEMETRY := 0

IMAGES ?=
SERVER ?= auto
N ?=
# make train / retrain / loop-demo: the ABID training photos you downloaded (images/<count>/*.jpg + labels.csv)
DATA ?=
# The shipped model's recipe (model/MODEL_CARD.md); recipes are defined once, in training/recipes.py
TRAIN_ARGS ?= --recipe shipped
# make retrain: a short fine-tune of INIT (the shipped model) on DATA (several: A,B or A:1,B:3)
INIT ?= model/weights
RETRAIN_ARGS ?= --recipe finetune
MODEL := build/model/model.tar.gz

# A wrong IMAGES is refused in one line before the install and the model packing (local.demo checks the rest).
ifneq ($(and $(filter demo,$(MAKECMDGOALS)),$(IMAGES)),)
ifeq ($(wildcard $(IMAGES)),)
$(error IMAGES=$(IMAGES): no such file or folder; give a photo, a folder of photos, or a folder of <bin>/<photo> subfolders, or leave IMAGES empty for generated photos)
endif
endif
# make loop-demo: both inputs are checked in one line before the install and the model packing.
ifneq ($(and $(filter train retrain loop-demo,$(MAKECMDGOALS)),$(if $(DATA),,missing)),)
$(error make $(filter train retrain loop-demo,$(MAKECMDGOALS)) needs DATA=<folder of images/<count>/*.jpg + labels.csv> (the ABID photos you downloaded; docs/training.md))
endif
ifneq ($(filter loop-demo,$(MAKECMDGOALS)),)
ifeq ($(and $(IMAGES),$(LABELS)),)
$(error make loop-demo needs IMAGES=<folder of photos or <bin>/<photo> subfolders> and LABELS=<CSV image,count, image relative to it>)
endif
endif
LABELS ?=
LOOP_ARGS ?=
BENCH_ARGS ?=
# The model for the local model server and benchmarks: model.onnx served by the installed ONNX
# Runtime (packs without torch from model/weights/model.onnx). $(MODEL), the deployed artifact,
# carries ONNX Runtime itself for the container's Python (model/package.py), and model.torchscript.
MODEL_LOCAL := build/model/model-local.tar.gz

FN_VENV := .venv-functions
FN_STAMP := $(FN_VENV)/.installed-functions-test
# What `make test-fast` leaves out: the local pipeline end to end and everything that packs,
# trains or serves a real model (marked in tests/conftest.py); `make test` runs it all.
FAST_TESTS := not e2e and not slow

.PHONY: help venv sam checkov test test-fast test-functions lint typecheck validate model-key demo loop-demo model train retrain bench bench-pipeline up down bench-realtime clean

help:
	@echo "make demo      run the whole pipeline locally (moto + local Batch Transform)"
	@echo "make test      unit, moto-backed and end-to-end tests (what CI runs)"
	@echo "make test-fast unit and moto-backed tests, no model packing, training or e2e"
	@echo "make test-functions  the Lambda tests alone in $(FN_VENV) (functions' dependencies, no torch)"
	@echo "make model     pack the shipped trained model into $(MODEL)"
	@echo "make train     retrain on DATA=<folder of <count>/*.jpg + labels.csv>"
	@echo "make retrain   fine-tune INIT (model/weights) on DATA=A,B (minutes on 2 cores)"
	@echo "make loop-demo IMAGES=dir LABELS=csv  upload, review, retrain, gate, promote, re-count"
	@echo "make bench     both artifacts through TorchServe and in-process vs the seed-style path"
	@echo "make bench-pipeline  2,000 photos through the local pipeline: photos/s, CPU per photo"
	@echo "make up        start the local stack in the background (make down stops it)"
	@echo "make bench-realtime  one photo at a time: local endpoint vs in-process counting"
	@echo "make lint | typecheck | validate (cfn-lint, checkov against docs/pipeline.md's security table once make checkov ran, sam validate --lint once make sam ran)"
	@echo "make sam       SAM CLI + AWS CLI into $(SAM_VENV) (README: Deploying)"
	@echo "make checkov   checkov into $(CHECKOV_VENV) (make validate runs it offline)"

# $(call install_group,GROUP,WHAT): .venv with the dependency group GROUP and this project (editable)
define install_group
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=25.1"
	@echo "Installing $(2)"
	$(PIP_INSTALL) --group $(1)
	$(PIP) install -q --no-deps -e .
endef

$(STAMP): pyproject.toml
	$(call install_group,dev,the full set (torch for training; make model and the tests): several GB; minutes)
	touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	$(call install_group,demo,the local stack (ONNX Runtime and moto; no torch): about 0.5 GB)
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# One pytest worker per core (pytest-xdist): measured 116 s -> 71 s on this 2-core machine, idle;
# 45 s after the test-fixture speed-ups (75 s of CPU instead of 145 s, measured in one sitting).
# --dist loadfile keeps a test file on one worker, so what a module builds once (its moto stack,
# the SageMaker SDK's tables, a browser) is not built again on the other worker.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile -m "$(FAST_TESTS)"

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
	$(VENV)/bin/mypy functions model training local tests cli common

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade "pip>=25.1"
	$(SAM_VENV)/bin/pip install -q "aws-sam-cli==$(SAM_CLI_VERSION)" awscli
	touch $@

sam: $(SAM_STAMP)

# Measured: 36 s to install, 30-55 s per run on template.yaml (2 shared cores).
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade "pip>=25.1"
	$(CHECKOV_VENV)/bin/pip install -q "checkov==$(CHECKOV_VERSION)"
	touch $@

checkov: $(CHECKOV_STAMP)

# checkov: every failed check must be a row of docs/pipeline.md's security table, and every row
# must still fail (tests/functions/test_checkov.py runs it; it skips without $(CHECKOV)).
validate: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	@if [ -x $(CHECKOV) ]; then $(PY) -m pytest -q -p no:cacheprovider tests/functions/test_checkov.py; \
	else echo "validate: $(CHECKOV) missing (make checkov installs it): checkov skipped"; fi
	@if [ -x $(SAM) ]; then echo "$(SAM) validate --lint"; $(SAM) validate --lint; \
	else echo "validate: $(SAM) missing (make sam installs it): sam validate --lint skipped"; fi

# The artifact key samconfig.toml deploys in CONFIG_ENV (README: upload the model under it).
model-key:
	@$(PYTHON) -c 'import sys, tomllib; o = tomllib.load(open("samconfig.toml", "rb"))[sys.argv[1]]["deploy"]["parameters"]["parameter_overrides"]; print(next(x.split("=", 1)[1] for x in o if x.startswith("ModelArtifactKey=")))' $(CONFIG_ENV)

$(MODEL): $(STAMP) $(wildcard model/weights/*) $(wildcard model/*.py)
	$(PY) -m model.package --out $(MODEL) --onnxruntime-wheel auto

$(MODEL_LOCAL): $(DEMO_STAMP) $(wildcard model/weights/*) $(wildcard model/*.py)
	$(PY) -m model.package --out $(MODEL_LOCAL) --onnx

model: $(MODEL)

train: $(STAMP)
	$(PY) -m training.train --data $(DATA) --out build/train $(TRAIN_ARGS)

retrain: $(STAMP)
	$(PY) -m training.train --data $(DATA) --init-from $(INIT) --out build/retrain $(RETRAIN_ARGS)

demo: $(DEMO_STAMP) $(MODEL_LOCAL)
	$(PY) -m local.demo --model $(MODEL_LOCAL) --server $(SERVER) $(if $(IMAGES),--images $(IMAGES)) $(if $(N),--count $(N)) $(if $(ALPHA),--alpha $(ALPHA))

# The model lifecycle on one fresh local stack (local/loop.py); report in build/loop/report.json
loop-demo: $(STAMP) $(MODEL_LOCAL)
	$(PY) -m local.loop --images $(IMAGES) --labels $(LABELS) --model $(MODEL_LOCAL) --base $(DATA) $(LOOP_ARGS)

# Both artifacts through TorchServe (as root, with Java) and in-process, against the seed-style handler.
bench: $(STAMP) $(MODEL) $(MODEL_LOCAL)
	$(PY) -m local.bench.serving_bench --model $(MODEL_LOCAL) --sagemaker-model $(MODEL) $(BENCH_ARGS)

bench-pipeline: $(STAMP) $(MODEL_LOCAL)
	$(PY) -m local.bench.pipeline_bench --model $(MODEL_LOCAL) --count 2000

# The local stack that stays up: moto + template.yaml + the Lambda/Batch-Transform stand-ins + the
# model server (the local real-time endpoint), detached, logs and state in build/local-stack/.
up: $(DEMO_STAMP) $(MODEL_LOCAL)
	$(PY) -m local.updown up --model $(MODEL_LOCAL) --server $(SERVER) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(ALPHA),--alpha $(ALPHA))

down: $(DEMO_STAMP)
	$(PY) -m local.updown down

bench-realtime: $(DEMO_STAMP) $(MODEL_LOCAL)
	$(PY) -m local.bench.realtime_bench --model $(MODEL_LOCAL) $(if $(IMAGES),--images $(IMAGES)) $(if $(N),--count $(N))

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache $(FN_VENV)
