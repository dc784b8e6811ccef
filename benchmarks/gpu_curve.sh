#!/usr/bin/env bash
# What evaluating during fine-tuning costs on a GPU: the Qwen3-0.6B shape (random weights, the
# embedded tokenizer; benchmarks/scale_setup.py) trained with the fast SFT default (the CUDA
# preset), evaluated on all suites (178 questions) every 50 optimizer steps; prints the training
# and evaluation times sft.json records. From the repository root:
#   bash benchmarks/gpu_curve.sh OUT [DATA]      (DATA: an sft --data value)
set -euo pipefail
out="$1"; data="${2:-data/sft/arithmetic.jsonl}"
python3 benchmarks/scale_setup.py "$out/setup" 16 > /dev/null
python3 -m harness sft --model "$out/setup/model" --data "$data" --no-register --out "$out/sft" \
  --eval-suites all --eval-every 50 --quiet > "$out/sft.log" 2>&1
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
