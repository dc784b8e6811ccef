"""Report rendering at scale: N questions x M models into report.html and report.md.

Builds a synthetic run folder (seeded; outputs of realistic length, some looping) and times
`harness.report.write_reports`. Target: 5,000 questions x 3 models in under 5 s, HTML under
10 MB. Run: python benchmarks/report_scale.py [--questions 5000] [--models 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from harness.results import RunFolder
from harness.scoring import measure
from harness.summarize import summarize

WORDS = "the a model answer is of to and in that it for on with as this number sum".split()  # noqa: SIM905


def synthetic_run(folder: Path, n_questions: int, n_models: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    models = [f"model-{i}" for i in range(n_models)]
    suites = ["math", "general", "repetition"]
    rows = []
    for q in range(n_questions):
        suite = suites[q % 3]
        for m in models:
            if rng.random() < 0.15:  # a loop that ran into the token limit
                output = "Sure. " + "1 + 1 = 2. " * rng.randint(10, 30)
                finish = "length"
            else:
                output = " ".join(rng.choices(WORDS, k=rng.randint(5, 40)))
                finish = "eos"
            rows.append(
                {
                    "model": m,
                    "suite": suite,
                    "id": f"q{q:05d}",
                    "question": f"Question {q}: what is {q} + {q % 7}? <b>bold?</b>",
                    "system": None,
                    "prompt": f"<|im_start|>user\nQuestion {q}<|im_end|>\n",
                    "answer": q + q % 7,
                    "tags": [f"tag{q % 5}"],
                    "output": output,
                    "finish_reason": finish,
                    "new_tokens": len(output) // 3,
                    "prompt_tokens": 20,
                    "correct": rng.random() < 0.5 + 0.1 * models.index(m),
                    "score": 0.0,
                    "scorer": [{"type": "numeric"}],
                    "detail": {},
                    "repetition": measure(output).to_dict(),
                    "error": None,
                }
            )
    run = RunFolder(folder)
    run.append_samples(rows)
    run.write_run(
        {
            "command": "synthetic",
            "created": "2026-11-28T00:00:00+00:00",
            "status": "complete",
            "versions": {"harness": "0", "transformers": "0", "torch": "0"},
            "host": {"platform": "synthetic", "cpus": 0},
            "decode": {"strategy": "greedy"},
            "suites": {
                s: {"path": f"suites/{s}.yaml", "hash": "0" * 16, "questions": n_questions // 3}
                for s in suites
            },
            "models": {
                m: {"fingerprint": "sha256:" + "0" * 64, "dtype": "float32", "device": "cpu"}
                for m in models
            },
        }
    )
    run.write_summary(summarize(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=5000)
    parser.add_argument("--models", type=int, default=3)
    args = parser.parse_args()
    from harness.report import write_reports

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        synthetic_run(folder, args.questions, args.models)
        start = time.perf_counter()
        html, md = write_reports(folder)
        seconds = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "questions": args.questions,
                    "models": args.models,
                    "seconds": round(seconds, 2),
                    "html_mb": round(html.stat().st_size / 2**20, 2),
                    "md_kb": round(md.stat().st_size / 2**10, 1),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
