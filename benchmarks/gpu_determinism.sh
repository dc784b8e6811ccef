#!/usr/bin/env bash
# Batch invariance of `harness run` end to end (run it on a GPU): the same command twice, other
# batch sizes, a --limit run and a run killed mid-way and resumed, each compared output for
# output with the first run (benchmarks/agreement.py), and each run's own self-check.
# From the repository root:  bash benchmarks/gpu_determinism.sh MODEL SUITE OUT [ONE_LIMIT]
# ONE_LIMIT: questions per suite for the batch-size-1 run (default: all).
set -euo pipefail
model="$1"; suite="$2"; out="$3"; one_limit="${4:-}"
mkdir -p "$out"
run() {
  local name="$1"; shift
  local t0; t0=$(date +%s.%N)
  python3 -m harness run --suite "$suite" --models "$model" --quiet --dtype bfloat16 \
    --out "$out/$name" "$@" > "$out/$name.log" 2>&1
  python3 -c "import sys; print(f'$name: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$t0" "$(date +%s.%N)"
  grep -h "self-check\|warning" "$out/$name.log" || true
}
run a
run b
run bs16 --batch-size 16
run bs7 --batch-size 7
run bs1 --batch-size 1 ${one_limit:+--limit "$one_limit"}
run limit --limit 20

# killed (SIGKILL) once 40 samples are on disk, then resumed with the same command
python3 -m harness run --suite "$suite" --models "$model" --quiet --dtype bfloat16 \
  --batch-size 16 --out "$out/resumed" > "$out/resumed.log" 2>&1 &
pid=$!
samples="$out/resumed/samples.jsonl"
while kill -0 "$pid" 2>/dev/null; do
  if [ -f "$samples" ] && [ "$(wc -l < "$samples")" -ge 40 ]; then kill -9 "$pid"; break; fi
  sleep 0.1
done
wait "$pid" 2>/dev/null || true
echo "killed with $(wc -l < "$samples") samples on disk"
run resumed --batch-size 16 --resume

python3 benchmarks/agreement.py "$out/a" "$out/b" "$out/bs16" "$out/bs7" "$out/bs1" "$out/limit" "$out/resumed"
