#!/usr/bin/env bash
# The paper's pipeline end to end on one GPU with CodeGen-350M-mono; prints tasks/s per family.
#
#   bash bench/gpu_codegen350m.sh                        # on a GPU machine (weights from the hub
#                                                        # or the local Hugging Face cache)
#   MODEL=tiny-codegen DEVICE=cpu DTYPE=float32 LIMIT=3 FILL_MODEL=tiny-random-bert \
#       bash bench/gpu_codegen350m.sh                    # dry run on CPU, offline, seconds
#
# Settings (environment): MODEL (default Salesforce/codegen-350M-mono), DEVICE (cuda), DTYPE
# (float16), BATCH (16), LIMIT (tasks per run, default 100: the first 100 of HumanEval + MBPP in
# the study's order, i.e. all HumanEval tasks among them), FILL_MODEL (BERT masking's fill model,
# default bert-base-uncased), OUT (default a new temporary folder), PYTHON (default .venv/bin/python,
# else python3), PERTURBATION=0 to skip BERT masking. Every run uses a fresh generation cache in
# OUT, so nothing is answered from an earlier run; the figures are the run loop's own
# "N tasks computed, S s (R tasks/s)" lines, and BERT masking's generations/s. A hub id loads
# only from the local Hugging Face cache when the machine has no network (download it first).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-Salesforce/codegen-350M-mono}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-float16}
BATCH=${BATCH:-16}
LIMIT=${LIMIT:-100}
FILL_MODEL=${FILL_MODEL:-bert-base-uncased}
PERTURBATION=${PERTURBATION:-1}
OUT=${OUT:-$(mktemp -d -t codegen350m-XXXX)}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export TOKENIZERS_PARALLELISM=false
export DATA_MIRROR=${DATA_MIRROR:-$( [ -d ../shared/upstream ] && cd ../shared && pwd || echo "" )}
if [ "$DEVICE" = cuda ]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: set DEVICE=cpu for a dry run')"
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
echo "model $MODEL on $DEVICE ($DTYPE), batch $BATCH, $LIMIT tasks per run -> $OUT"

run() {  # name, then options; prints the run's summary line
  local name=$1; shift
  "$PYTHON" -m attention_alignment --model "$MODEL" --name bench --device "$DEVICE" --dtype "$DTYPE" \
    --batch-size "$BATCH" --limit "$LIMIT" --benchmark all --output "$OUT/$name" \
    --cache "$OUT/$name.sqlite" --no-progress "$@" > "$OUT/$name.txt"
  echo "$name: $(head -n 1 "$OUT/$name.txt")"
}
run self_attention --family self_attention
run gradient --family gradient
run all_ten --family all
if [ "$PERTURBATION" = 1 ]; then
  run bert_masking --methods bert_perturbation --fill-model "$FILL_MODEL"
  # generations/s: the rate the README's "On paper" estimate needs
  "$PYTHON" - "$OUT/bert_masking" "$OUT/bert_masking.txt" <<'PY'
import json, re, sys
from pathlib import Path
gens = sum(json.loads(line).get("details", {}).get("n_generations", 0)
           for f in Path(sys.argv[1]).glob("*.jsonl") for line in f.read_text().splitlines()[1:])
seconds = float(re.search(r"([\d.]+) s \(", Path(sys.argv[2]).read_text()).group(1))
print(f"bert_masking: {gens} generations in {seconds:.1f} s = {gens / seconds:.2f} generations/s")
PY
fi
echo "result files and full summaries in $OUT"
