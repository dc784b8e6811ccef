"""Prints the 126 seeded single-step questions that open suites/math.yaml (ids add-, sub-, mix-,
mul-; seed 2026), in the suite's question format, to compare or regenerate that part of the file.

The suite's other questions (multi-step, three-digit, division, word problems) are written in
the file itself. python scripts/make_math_suite.py > /tmp/first-126.yaml
"""

from __future__ import annotations

import random

PHRASES = {
    "addition": [
        "Calculate {a}+{b}",
        "What is {a} + {b}?",
        "Add {a} and {b}.",
        "What's the sum of {a} and {b}?",
        "{a} + {b} = ?",
        "Compute {a} plus {b}.",
    ],
    "subtraction": [
        "Calculate {a}-{b}",
        "What is {a} - {b}?",
        "Subtract {b} from {a}.",
        "What's {a} minus {b}?",
        "{a} - {b} = ?",
        "Compute {a} - {b}.",
    ],
    "mixed": ["Calculate {e}", "What is {s}?", "Work out {s}.", "{s} = ?", "Compute {e}."],
    "multiplication": [
        "What is {a} * {b}?",
        "Calculate {a}*{b}",
        "Multiply {a} by {b}.",
        "What's {a} times {b}?",
        "{a} x {b} = ?",
        "Compute the product of {a} and {b}.",
    ],
}


def main() -> None:
    rng = random.Random(2026)
    seen: set[str] = set()
    items: list[tuple[str, str, int, list[str]]] = [
        ("mixed", "Calculate 1+1-1", 1, ["mixed", "tutorial"]),
    ]
    seen.add("Calculate 1+1-1")

    def add(kind: str, prompt: str, answer: int, tags: list[str]) -> None:
        if prompt not in seen:
            seen.add(prompt)
            items.append((kind, prompt, answer, tags))

    while sum(k == "addition" for k, *_ in items) < 36:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        add("addition", rng.choice(PHRASES["addition"]).format(a=a, b=b), a + b, ["addition"])
    while sum(k == "subtraction" for k, *_ in items) < 30:
        a = rng.randint(10, 99)
        b = rng.randint(1, a)
        add(
            "subtraction",
            rng.choice(PHRASES["subtraction"]).format(a=a, b=b),
            a - b,
            ["subtraction"],
        )
    while sum(k == "mixed" for k, *_ in items) < 24:
        a, b, c = rng.randint(1, 20), rng.randint(1, 20), rng.randint(1, 20)
        if rng.random() < 0.5:
            e, s, v = f"{a}+{b}-{c}", f"{a} + {b} - {c}", a + b - c
        else:
            e, s, v = f"{a}-{b}+{c}", f"{a} - {b} + {c}", a - b + c
        add("mixed", rng.choice(PHRASES["mixed"]).format(e=e, s=s), v, ["mixed"])
    for digits, n in (("2x1-digit", 18), ("2x2-digit", 18)):
        count = 0
        while count < n:
            a = rng.randint(11, 99)
            b = rng.randint(2, 9) if digits == "2x1-digit" else rng.randint(11, 99)
            before = len(items)
            add(
                "multiplication",
                rng.choice(PHRASES["multiplication"]).format(a=a, b=b),
                a * b,
                ["multiplication", digits],
            )
            count += len(items) - before

    counters: dict[str, int] = {}
    for kind, prompt, answer, tags in items:
        counters[kind] = counters.get(kind, 0) + 1
        qid = f"{kind[:3]}-{counters[kind]:02d}"
        quoted = prompt.replace('"', '\\"')
        print(f'  - id: {qid}\n    prompt: "{quoted}"\n    answer: {answer}')
        print(f"    tags: [{', '.join(tags)}]")


if __name__ == "__main__":
    main()
