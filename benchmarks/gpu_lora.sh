#!/usr/bin/env bash
# LoRA beside full fine-tuning on a GPU: the Qwen3-0.6B shape (random weights, the embedded
# tokenizer; benchmarks/scale_setup.py) trained with the fast SFT default on the same data, once
# with every weight and once with `--lora` (r=16 on every attention and MLP projection); prints
# the tokens/s and the peak GPU memory sft.json records. From the repository root:
#   bash benchmarks/gpu_lora.sh OUT [DATA]      (DATA: an sft --data value)
set -euo pipefail
out="$1"; data="${2:-data/sft/arithmetic.jsonl}"
python3 benchmarks/scale_setup.py "$out/setup" 16 > /dev/null
for kind in full lora; do
  flag=""; [ "$kind" = lora ] && flag="--lora"
  python3 -m harness sft --model "$out/setup/model" --data "$data" --no-register \
    --out "$out/$kind" --quiet $flag > "$out/$kind.log" 2>&1 || { tail -40 "$out/$kind.log"; exit 1; }
done
python3 - "$out" <<'PY'
import json
import sys
from pathlib import Path

for kind in ("full", "lora"):
    info = json.loads((Path(sys.argv[1]) / kind / "sft.json").read_text())
    print(f"{kind}: {info['steps']} steps, {info['tokens']} tokens in {info['train_seconds']} s = "
          f"{info['tokens_per_s']} tokens/s; peak GPU memory {info['peak_gpu_memory_gb']} GB; "
          f"trainable {info['trainable_parameters']:,}; loss {info['loss_curve'][0]['loss']} -> "
          f"{info['final_loss']}; learning rate {info['settings']['learning_rate']:.3g}")
PY
