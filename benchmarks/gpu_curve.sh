#!/usr/bin/env bash
# What evaluating during fine-tuning costs on a GPU: the Qwen3-0.6B shape (random weights, the
# embedded tokenizer; benchmarks/scale_setup.py) trained with the fast SFT default (the CUDA
# preset), evaluated every 50 optimizer steps; prints the training and evaluation times sft.json
# records. From the repository root:
#   bash benchmarks/gpu_curve.sh OUT [DATA] [SUITES]
# DATA: an sft --data value. SUITES: an --eval-suites value (default all; `goal` = the first
# 28 general, 126 math and 24 repetition questions, 178 as in issue 17's goal). SETUP=DIR reuses
# a model folder built by an earlier run (DIR/model).
set -euo pipefail
out="$1"; data="${2:-data/sft/arithmetic.jsonl}"; suites="${3:-all}"
setup="${SETUP:-$out/setup}"; mkdir -p "$out"
[ -d "$setup/model" ] || python3 benchmarks/scale_setup.py "$setup" 16 > /dev/null
if [ "$suites" = goal ]; then
  suites=$(python3 benchmarks/subset_suites.py "$out/suites" general=28 math=126 repetition=24)
fi
python3 -m harness sft --model "$setup/model" --data "$data" --no-register --out "$out/sft" \
  --eval-suites "$suites" --eval-every 50 --quiet > "$out/sft.log" 2>&1
python3 - "$out/sft/sft.json" <<'PY'
import json
import sys

info = json.load(open(sys.argv[1]))
curve = info["curve"]
trained = curve["training_seconds"]
print(f"data {info['data']} ({info['data_rows']} rows), {info['steps']} steps, "
      f"{info['tokens']} tokens, {info['tokens_per_s']} tokens/s over the whole runtime")
print(f"training {trained:.1f} s without the evaluations; evaluations {curve['eval_seconds']} s "
      f"at steps {curve['points']} = {100 * curve['eval_share_of_training']:.1f}% of training")
print(f"seconds per point: {curve['seconds_per_point']}")
PY
