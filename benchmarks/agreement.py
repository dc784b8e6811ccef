"""How many samples of run folders agree, output for output, with a reference run folder.

Used to measure what the device, dtype, decoder and batch size change: e.g. GPU bf16 with the
static decoder against CPU float32 with transformers' generate, or one run against its rerun.
"Identical" is the text, the finish reason and the token count; margins are compared separately
(the batch-invariant decoder reproduces them bit for bit). Samples only one side has (a --limit
run) are left out. Run: python benchmarks/agreement.py REF RUN...
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
            fields = ("output", "finish_reason", "new_tokens")
            differ = [k for k in keys if any(rows[k][f] != ref[k][f] for f in fields)]
            margins = sum(rows[k].get("min_margin") == ref[k].get("min_margin") for k in keys)
            correct_same = sum(rows[k]["correct"] == ref[k]["correct"] for k in keys)
            print(
                f"{other} {model}: identical outputs {len(keys) - len(differ)}/{len(keys)}, "
                f"same verdict {correct_same}/{len(keys)}, same min_margin {margins}/{len(keys)}"
                + (f"; differ: {', '.join(f'{k[1]}/{k[2]}' for k in differ[:8])}" if differ else "")
            )


if __name__ == "__main__":
    main()
