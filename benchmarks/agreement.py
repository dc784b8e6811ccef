"""How many samples of run folders agree, output for output, with a reference run folder.

Used to measure what the device, dtype and decoder change: e.g. GPU bf16 with the static decoder
against CPU float32 with transformers' generate. Run: python benchmarks/agreement.py REF RUN...
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.results import RunFolder


def main() -> None:
    ref_dir, *others = sys.argv[1:]
    ref = {(r["model"], r["suite"], r["id"]): r for r in RunFolder(Path(ref_dir)).read_samples()}
    print(f"reference: {ref_dir} ({len(ref)} samples)")
    for other in others:
        rows = {(r["model"], r["suite"], r["id"]): r for r in RunFolder(Path(other)).read_samples()}
        for model in sorted({k[0] for k in rows}):
            keys = [k for k in rows if k[0] == model and k in ref]
            same = sum(rows[k]["output"] == ref[k]["output"] for k in keys)
            correct_same = sum(rows[k]["correct"] == ref[k]["correct"] for k in keys)
            print(
                f"{other} {model}: identical outputs {same}/{len(keys)}, "
                f"same verdict {correct_same}/{len(keys)}"
            )


if __name__ == "__main__":
    main()
