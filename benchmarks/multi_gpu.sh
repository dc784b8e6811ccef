#!/usr/bin/env bash
# 1 vs 2 GPUs: evaluation throughput (and identical outputs) and SFT tokens/s.
# Run on a machine with 2 GPUs from the repository root: bash benchmarks/multi_gpu.sh OUT_DIR
set -euo pipefail
out="${1:-/tmp/scale}"
python3 benchmarks/scale_setup.py "$out" 2048
run() { python3 -m harness run --suite "$out/scale.yaml" --models "$out/model" --quiet --dtype bfloat16 "$@"; }
bs="${BATCH:-256}"
t0=$(date +%s.%N); CUDA_VISIBLE_DEVICES=0 run --batch-size "$bs" --out "$out/one" > "$out/one.log"; t1=$(date +%s.%N)
python3 -m torch.distributed.run --standalone --nproc_per_node 2 -m harness run --suite "$out/scale.yaml" \
  --models "$out/model" --quiet --dtype bfloat16 --batch-size "$bs" --out "$out/two" > "$out/two.log"; t2=$(date +%s.%N)
python3 -c "print('eval, batch $bs: 1 GPU %.1f s, 2 GPUs %.1f s (whole command)' % ($t1 - $t0, $t2 - $t1))"
grep -h "samples in" "$out/one.log" "$out/two.log"
python3 benchmarks/agreement.py "$out/one" "$out/two"
printf 'epochs: 1\nbatch_size: 32\ngrad_accum: 2\nmax_length: 128\nmax_rows: 4096\nlr_scheduler: linear\nwarmup_steps: 5\nlearning_rate: 1.0e-4\nlogging_steps: 8\n' > "$out/sft.yaml"
sft() { python3 -m harness sft --model "$out/model" --data data/sft/arithmetic.jsonl --no-register --config "$out/sft.yaml" --quiet "$@"; }
CUDA_VISIBLE_DEVICES=0 sft --out "$out/sft1" > "$out/sft1.log" 2>&1
python3 -m torch.distributed.run --standalone --nproc_per_node 2 -m harness sft --model "$out/model" \
  --data data/sft/arithmetic.jsonl --no-register --config "$out/sft.yaml" --quiet --out "$out/sft2" > "$out/sft2.log" 2>&1
for d in sft1 sft2; do python3 -c "import json; d=json.load(open('$out/$d/sft.json')); print('$d', {k: d[k] for k in ('processes','steps','tokens','train_seconds','tokens_per_s','final_loss')})"; done
