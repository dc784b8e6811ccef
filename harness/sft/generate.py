"""Training data written by the project itself (no downloads): arithmetic and a small general set.

Answers restate the expression before the result ("17 + 42 = 59"): the format the base model
saw in pre-training, so SFT teaches the chat turn and the habit of stopping, and leans on what the
base already knows. Problems whose expression appears in a suite are never generated.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from .overlap import expression_key

PHRASES = {
    "addition": [
        "What is {a} + {b}?",
        "Calculate {a}+{b}",
        "Add {a} and {b}.",
        "{a} + {b} = ?",
        "What's {a} plus {b}?",
        "Compute {a} + {b}.",
        "Find the sum of {a} and {b}.",
        "How much is {a} + {b}?",
        "Please calculate {a} + {b}.",
        "What do you get when you add {a} to {b}?",
    ],
    "subtraction": [
        "What is {a} - {b}?",
        "Calculate {a}-{b}",
        "Subtract {b} from {a}.",
        "{a} - {b} = ?",
        "What's {a} minus {b}?",
        "Compute {a} - {b}.",
        "How much is {a} - {b}?",
        "Take {b} away from {a}.",
        "Please calculate {a} - {b}.",
    ],
    "mixed": [
        "Calculate {e}",
        "What is {s}?",
        "Work out {s}.",
        "{s} = ?",
        "Compute {e}.",
        "How much is {s}?",
        "Please calculate {s}.",
        "Evaluate {s}.",
    ],
    "multiplication": [
        "What is {a} * {b}?",
        "Calculate {a}*{b}",
        "Multiply {a} by {b}.",
        "What's {a} times {b}?",
        "{a} x {b} = ?",
        "Compute the product of {a} and {b}.",
        "How much is {a} * {b}?",
        "Please calculate {a} * {b}.",
    ],
}
WEIGHTS = {"addition": 4, "subtraction": 3, "mixed": 2, "multiplication": 2}


def _problem(kind: str, rng: random.Random) -> tuple[str, str, int]:
    """(prompt, answer, value) for one random problem of `kind`."""
    if kind == "addition":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        prompt, expr, value = rng.choice(PHRASES[kind]).format(a=a, b=b), f"{a} + {b}", a + b
    elif kind == "subtraction":
        a = rng.randint(0, 99)
        b = rng.randint(0, a)
        prompt, expr, value = rng.choice(PHRASES[kind]).format(a=a, b=b), f"{a} - {b}", a - b
    elif kind == "mixed":
        a, b, c = rng.randint(0, 20), rng.randint(0, 20), rng.randint(0, 20)
        if rng.random() < 0.5:
            e, s, value = f"{a}+{b}-{c}", f"{a} + {b} - {c}", a + b - c
        else:
            e, s, value = f"{a}-{b}+{c}", f"{a} - {b} + {c}", a - b + c
        prompt, expr = rng.choice(PHRASES[kind]).format(e=e, s=s), s
    else:
        a = rng.randint(2, 99)
        b = rng.randint(2, 9) if rng.random() < 0.5 else rng.randint(11, 99)
        prompt, expr, value = rng.choice(PHRASES[kind]).format(a=a, b=b), f"{a} * {b}", a * b
    return prompt, f"{expr} = {value}", value


def arithmetic(n: int, seed: int, exclude: Iterable[str] = ()) -> list[dict]:
    """`n` distinct arithmetic chat rows; any problem whose expression is in `exclude` is skipped."""
    rng = random.Random(seed)
    banned = {expression_key(p) for p in exclude} - {None}
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    rows, seen = [], set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n:
            raise ValueError(f"could not find {n} distinct problems outside the suites")
        prompt, answer, _ = _problem(rng.choices(kinds, weights)[0], rng)
        key = expression_key(prompt)
        if prompt in seen or key in banned:
            continue
        seen.add(prompt)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


# A small general chat set, written for this project: short, factual, one- or two-sentence
# answers that end cleanly, on the topics the base model read about in pre-training.
GENERAL = [
    (
        "Explain briefly what a large language model is.",
        "A large language model, or LLM, is a neural network trained on a lot of text to predict the next word.",
    ),
    (
        "Describe an LLM in a few words.",
        "An LLM is a language model that can answer questions and write text.",
    ),
    (
        "How do large language models learn?",
        "Large language models learn patterns of language from huge amounts of text.",
    ),
    ("Tell me what a process is.", "A process is a running program with its own memory space."),
    (
        "Tell me what a thread is.",
        "A thread is a unit of execution inside a process, and threads share the memory of their process.",
    ),
    (
        "Why are threads lighter than processes?",
        "Threads are lighter than processes because they share memory.",
    ),
    (
        "How do threads and processes differ in memory?",
        "Processes are isolated from each other, while threads of one process share memory.",
    ),
    ("Tell me about Python.", "Python is a popular programming language."),
    ("Which city is the capital of France?", "The capital of France is Paris."),
    ("Which city is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("Which city is the capital of Italy?", "The capital of Italy is Rome."),
    ("When does water boil?", "Water boils at 100 degrees Celsius at sea level."),
    ("When does water freeze?", "Water freezes at 0 degrees Celsius."),
    ("Tell me about the sun.", "The sun is a star at the center of our solar system."),
    (
        "How long does the earth take to go around the sun?",
        "The earth goes around the sun once a year.",
    ),
    ("How many days does a week have?", "A week has seven days."),
    ("How many months does a year have?", "A year has twelve months."),
    ("What color is the sky?", "The sky is blue on a clear day."),
    (
        "How do plants make food?",
        "Plants use sunlight to make food, a process called photosynthesis.",
    ),
    ("What does a CPU do?", "A CPU is the part of a computer that runs instructions."),
    ("What is a GPU good at?", "A GPU is a processor that is good at parallel math."),
    ("What does memory store?", "Memory stores data that a program is using right now."),
    ("What is a function in code?", "A function is a named block of code that can be called."),
    ("What is a list?", "A list holds items in order."),
    ("Name some colors.", "Red, green and blue are colors."),
    ("Name two animals.", "Cats and dogs are animals."),
    ("How many sides has a triangle?", "A triangle has three sides."),
    ("Describe a square.", "A square has four equal sides."),
    (
        "Explain fine-tuning in one sentence.",
        "Fine-tuning trains a model further on a smaller set of examples.",
    ),
    ("Explain machine learning briefly.", "Machine learning lets computers learn from data."),
    ("What is a neural network made of?", "A neural network is made of layers of simple units."),
    ("What are tokens?", "Tokens are the small pieces of text a model reads."),
    ("Explain greedy decoding.", "Greedy decoding always picks the most likely next token."),
    ("What goes around the earth?", "The moon goes around the earth."),
    ("What is frozen water called?", "Ice is frozen water."),
    ("Which is faster, light or sound?", "Light travels faster than sound."),
    ("How many bits make a byte?", "A byte has eight bits."),
    ("Hello!", "Hello, how are you?"),
    ("Thanks for your help.", "Thank you very much."),
    ("Where does the dog run?", "The dog runs in the park."),
    ("Count from 1 to 3.", "1, 2, 3"),
    ("Count from 1 to 4.", "1, 2, 3, 4"),
    ("Count from 2 to 6.", "2, 3, 4, 5, 6"),
    ("List two colors.", "Red and blue."),
    ("Name two fruits.", "Apples and bananas."),
    ("Say 'ok' once.", "ok"),
    ("Repeat the word 'cat' once.", "cat"),
    ("Say 'no' two times.", "no no"),
    ("Answer with one word: is fire hot?", "Yes."),
    ("Reply with just a number: how many wheels does a bicycle have?", "2"),
    ("Write the number 3 and nothing else.", "3"),
    ("Say thank you.", "Thank you."),
]


def general() -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in GENERAL
    ]
