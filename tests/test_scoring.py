from __future__ import annotations

import pytest

from harness.scoring import SCORERS, Candidate, ScorerSpec, measure, score
from harness.scoring.correctness import numbers
from harness.scoring.repetition import distinct_n, seq_rep_n, tail_loop, units


def run(name: str, output: str, answer=None, finish: str = "eos", **params):
    return SCORERS[name](Candidate(output, answer, finish, measure(output)), **params)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1+1-1 = 1", [1, 1, 1, 1]),
        ("23-5=18", [23, 5, 18]),
        ("The answer is -5.", [-5]),
        ("x = -12.5 or 1,081", [-12.5, 1081]),
        ("no digits here", []),
        ("(3)-2", [3, 2]),
    ],
)
def test_number_extraction(text, expected):
    assert numbers(text) == expected


def test_numeric_takes_the_final_number():
    assert run("numeric", "23 * 47 = 1081", 1081).correct
    assert run("numeric", "The result is 1,081.", 1081).correct
    assert not run("numeric", "23*47 is equal to 1024*47.", 1081).correct
    assert run("numeric", "It is 5, not 6", 5, take="first").correct
    assert run("numeric", "3.14", 3.1416, tolerance=0.01).correct
    s = run("numeric", "nothing", 3)
    assert not s.correct and s.detail == {"extracted": None}


def test_numeric_can_require_the_answer_to_stop():
    ramble = "1+1-1 = 1. Now 2+2 = 4, 4-3 = 1"  # never stopped, last number right by chance
    assert run("numeric", ramble, 1, finish="length").correct
    s = run("numeric", ramble, 1, finish="length", require_stop=True)
    assert not s.correct and s.detail == {"extracted": None, "stopped": False}
    assert run("numeric", "1+1-1 = 1", 1, finish="eos", require_stop=True).correct


def test_exact_normalises_case_space_and_punctuation():
    assert run("exact", "  Paris. ", "paris").correct
    assert run("exact", '"Yes"', "yes").correct
    assert not run("exact", "Paris, France", "Paris").correct
    assert not run("exact", "paris", "Paris", case_sensitive=True).correct


def test_contains_family():
    assert run("contains", "The capital is Paris.", text="paris").correct
    assert not run("contains", "The capital is Paris.", text="paris", case_sensitive=True).correct
    s = run("contains_all", "threads share memory", values=["thread", "process"])
    assert not s.correct and s.value == 0.5 and s.detail["missing"] == ["process"]
    assert run("contains_any", "a language model", values=["LLM", "language model"]).correct
    assert not run("not_contains", "1, 2, 3, 4, 5, 6", values=["6"]).correct


def test_regex_choice_and_lengths():
    assert run("regex", "Water freezes at 0 degrees", pattern=r"(?<!\d)0(?!\d)").correct
    assert not run("regex", "at 100 degrees", pattern=r"(?<!\d)0(?!\d)").correct
    assert run("regex", "42", pattern=r"\d+", full=True).correct
    assert run("choice", "It is a star, not a planet.", "star", choices=["star", "planet"]).correct
    s = run("choice", "A planet? No, a star.", "star", choices=["star", "planet"])
    assert not s.correct and s.detail["picked"] == "planet"
    assert not run("choice", "starfish", "star", choices=["star", "planet"]).correct
    assert run("max_words", "one two three", limit=3).correct
    assert not run("max_words", "one two three four", limit=3).correct
    assert run("max_sentences", "An LLM is a model. It predicts text.", limit=2).correct
    assert not run("max_sentences", "One. Two. Three", limit=2).correct


def test_stops_and_no_repetition_use_generation_facts():
    assert run("stops", "ok", finish="eos").correct
    assert run("stops", "ok", finish="stop").correct
    assert not run("stops", "ok ok ok", finish="length").correct
    assert not run("no_repetition", "I like it. I like it. I like it.").correct
    assert run("no_repetition", "1, 2, 3, 4, 5").correct


def test_composite_scorer_requires_all():
    specs = (ScorerSpec("contains", {"text": "LLM"}), ScorerSpec("max_words", {"limit": 5}))
    good, _ = score(specs, "An LLM predicts text.", None, "eos")
    bad, _ = score(specs, "An LLM is a large language model trained on text.", None, "eos")
    assert good.correct and good.value == 1.0
    assert not bad.correct and bad.value == 0.5


# --------------------------------------------------------------------------- repetition


def test_units_split_words_and_punctuation():
    assert units("1+1=2, ok!") == ["1", "+", "1", "=", "2", ",", "ok", "!"]


def test_seq_rep_and_distinct_on_hand_counts():
    # 4-grams: abcd bcda cdab dabc abcd -> 4 unique of 5
    seq = ["a", "b", "c", "d", "a", "b", "c", "d"]
    assert seq_rep_n(seq, 4) == pytest.approx(1 - 4 / 5)
    assert distinct_n(seq, 2) == pytest.approx(4 / 7)  # ab bc cd da ab bc cd
    assert seq_rep_n(["a", "b"], 4) == 0.0 and distinct_n([], 2) == 1.0


def test_tail_loop_finds_the_looping_tail():
    text = "The answer is 2. 1 + 1 = 2 1 + 1 = 2 1 + 1 = 2 1 + 1"
    loop = tail_loop(text)
    assert loop is not None and loop.period == 5
    assert loop.repeats == pytest.approx(3.6)  # three copies and three units of a fourth
    assert text[loop.start_char :] == "1 + 1 = 2 1 + 1 = 2 1 + 1 = 2 1 + 1"
    assert loop.span == "1 + 1 = 2"


def test_tail_loop_thresholds():
    assert tail_loop("hello hello hello") is None  # a short span needs ten copies
    assert tail_loop(" ".join(["ha"] * 10)) is not None
    assert tail_loop("Count: 1, 2, 3, 4, 5, 6, 7, 8.") is None
    assert tail_loop("I think so. I think so.") is not None
    assert tail_loop("") is None


def test_measure_flags_loops_and_heavy_repetition_only():
    clean = measure("A process has its own memory; threads share it.")
    assert not clean.repeated and clean.tail_loop is None and clean.seq_rep_4 == 0.0
    looped = measure("Sure! " + "1 + 1 = 2. " * 8)
    assert looped.repeated and looped.tail_loop is not None and looped.seq_rep_4 > 0.5
    assert measure("12").distinct_2 == 1.0
