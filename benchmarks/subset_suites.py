"""The first N questions of shipped suites, written as suite files of their own, so a benchmark
can evaluate on a fixed, smaller set (e.g. the 178 questions of issue 17's goal: general=28,
math=126, repetition=24, the suites' sizes when the goal was set, with the same token limits:
64 for math, 96 for the others).
Run: python benchmarks/subset_suites.py OUT_DIR general=28 math=126 repetition=24
Prints the comma-separated paths, an `--eval-suites` / `--suite` value.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from harness.suites import available_suites, load_suite


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    known = available_suites(judged=False)
    paths = []
    for arg in sys.argv[2:]:
        name, count = arg.split("=")
        raw = yaml.safe_load(known[name].read_text())
        if len(raw["questions"]) < int(count):
            raise SystemExit(f"{name} has {len(raw['questions'])} questions, fewer than {count}")
        raw["questions"] = raw["questions"][: int(count)]
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        assert len(load_suite(path).questions) == int(count)  # still a valid suite
        paths.append(str(path))
    print(",".join(paths))


if __name__ == "__main__":
    main()
