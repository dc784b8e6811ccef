from __future__ import annotations

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.suites import load_suite, load_suites, resolve_suites

from .conftest import PROJECT


def problems_of(path):
    with pytest.raises(InputError) as info:
        load_suite(path)
    return info.value.problems


# --------------------------------------------------------------------------- shipped suites


def test_shipped_suites_meet_their_brief():
    suites = {s.name: s for s in load_suites("all")}
    assert set(suites) >= {"general", "math", "repetition"}
    general, math, rep = suites["general"], suites["math"], suites["repetition"]
    prompts = {q.prompt for q in general.questions}
    assert {
        "Give me an 1-sentence introduction of LLM.",
        "Calculate 1+1-1",
        "What's the difference between thread and process?",
    } <= prompts
    assert len(general.questions) >= 200
    general_tags = {t for q in general.questions for t in q.tags}
    assert {"facts", "definitions", "explanations", "format", "tutorial"} <= general_tags
    assert len(math.questions) >= 300
    tags = [t for q in math.questions for t in q.tags]
    for kind in ("addition", "subtraction", "mixed", "multi-step", "division", "word-problem"):
        assert tags.count(kind) >= 10, kind
    assert tags.count("multiplication") >= 30 and tags.count("three-digit") >= 30
    # a model that rambles to the token limit and ends on the right number is not right
    assert all(q.scorers[0].type == "numeric" for q in math.questions)
    assert all(q.scorers[0].params.get("require_stop") for q in math.questions)
    assert "Calculate 1+1-1" in {q.prompt for q in math.questions}
    assert len(rep.questions) >= 100
    assert all({"stops"} <= {s.type for s in q.scorers} for q in rep.questions)


def test_the_first_126_math_questions_keep_their_ids():
    """Baselines and old runs compare by id: the original questions are all still there."""
    ids = [q.id for q in load_suite(PROJECT / "suites/math.yaml").questions]
    for prefix, n in (("add-", 36), ("sub-", 30), ("mul-", 36)):
        assert {f"{prefix}{i:02d}" for i in range(1, n + 1)} <= set(ids), prefix
    assert len([i for i in ids if i.startswith("mix-")]) == 24


def test_math_answers_are_right():
    for q in load_suite(PROJECT / "suites/math.yaml").questions:
        if "word-problem" in q.tags:  # prose: checked by hand and by their integer answers
            assert isinstance(q.answer, int) and q.answer >= 0, q.id
            continue
        expr = q.prompt
        for word in ("Calculate", "What is", "What's", "Compute", "Work out", "= ?", "?", "."):
            expr = expr.replace(word, " ")
        expr = (
            expr.replace("the sum of", "")
            .replace("the product of", "")
            .replace(" plus ", "+")
            .replace(" minus ", "-")
            .replace(" times ", "*")
            .replace(" x ", "*")
            .replace("Add", "")
            .replace("Multiply", "")
        )
        if " and " in expr:
            a, b = expr.split(" and ")
            expr = f"{a}{'*' if 'multiplication' in q.tags else '+'}{b}"
        if "Subtract" in expr:
            b, a = expr.replace("Subtract", "").split(" from ")
            expr = f"{a}-{b}"
        if " by " in expr:
            expr = expr.replace(" by ", "*")
        assert eval(expr) == q.answer, (q.id, q.prompt)  # noqa: S307 - digits and operators only


def test_suite_hash_ignores_tags_but_not_answers(write):
    body = "name: s\nquestions:\n  - id: a\n    prompt: hi\n    answer: 1\n    scorer: numeric\n"
    h = load_suite(write("a.yaml", body)).hash
    assert load_suite(write("b.yaml", body + "    tags: [x]\n")).hash == h
    assert load_suite(write("c.yaml", body.replace("answer: 1", "answer: 2"))).hash != h


# --------------------------------------------------------------------------- errors


def test_bad_yaml_names_file_and_line(write):
    path = write("bad.yaml", "name: x\nquestions:\n  - id: a\n    prompt: [unclosed\n")
    (p,) = problems_of(path)
    assert p.file == str(path) and p.line is not None and p.line >= 4
    assert "invalid YAML" in p.message


def test_every_problem_is_reported_with_line_and_field(write):
    path = write(
        "many.yaml",
        """name: many
defaults:
  scorer: numeric
questions:
  - id: q1
    prompt: "What is 2+2?"
    anwser: 4
  - id: q2
    prompt: 17
    answer: 3
  - id: q1
    prompt: "dup"
    answer: 1
  - prompt: "no id"
    answer: 2
  - id: q5
    prompt: "bad scorer"
    scorer: numerik
  - id: q6
    prompt: "bad option"
    scorer: {type: numeric, tolerence: 1}
    answer: 1
  - id: q7
    prompt: "needs an answer"
  - id: q8
    prompt: "wrong answer type"
    answer: four
  - id: q9
    prompt: "bad tokens"
    answer: 1
    max_new_tokens: -3
""",
    )
    problems = problems_of(path)
    got = {(p.line, p.field) for p in problems}
    text = "\n".join(str(p) for p in problems)
    assert (7, "questions[0].anwser") in got and "did you mean 'answer'" in text
    assert (9, "questions[1].prompt") in got
    assert (11, "questions[2].id") in got and "duplicate id 'q1'" in text
    assert any(f == "questions[3].id" and "missing" in str(p) for p in problems for f in [p.field])
    assert (18, "questions[4].scorer.type") in got and "did you mean 'numeric'" in text
    assert (21, "questions[5].scorer.tolerence") in got
    assert any(p.field == "questions[6].answer" and "missing" in p.message for p in problems)
    assert (27, "questions[7].answer") in got
    assert (31, "questions[8].max_new_tokens") in got
    assert all(p.file == str(path) for p in problems)


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        ("questions: []\n", "questions", "non-empty"),
        ("name: x\n", "questions", "missing"),
        ("- 1\n- 2\n", None, "mapping"),
        ("questions:\n  - id: a\n    prompt: p\n", "questions[0].scorer", "no defaults.scorer"),
        (
            "colour: red\nquestions:\n  - {id: a, prompt: p, scorer: stops}\n",
            "colour",
            "unknown key",
        ),
        (
            "questions:\n  - {id: a, prompt: p, scorer: {type: contains}}\n",
            "questions[0].scorer.text",
            "needs option",
        ),
        (
            "questions:\n  - {id: a, prompt: p, scorer: {type: max_words, limit: many}}\n",
            "questions[0].scorer.limit",
            "expected integer",
        ),
        (
            "name: x\nname: y\nquestions:\n  - {id: a, prompt: p, scorer: stops}\n",
            "name",
            "duplicate key",
        ),
        (
            "questions:\n  - {id: a, prompt: p, answer: 1, scorer: {type: numeric, take: mid}}\n",
            "questions[0].scorer.take",
            "one of 'last', 'first'",
        ),
        (
            "questions:\n  - {id: a, prompt: '  ', scorer: stops}\n",
            "questions[0].prompt",
            "non-empty",
        ),
    ],
)
def test_single_problems(write, text, field, needle):
    problems = problems_of(write("s.yaml", text))
    assert any(p.field == field and needle in p.message for p in problems), problems


def test_validate_command_exit_codes(write, capsys):
    good = write("good.yaml", "questions:\n  - {id: a, prompt: hi, scorer: stops}\n")
    bad = write("bad.yaml", "questions:\n  - {id: a, prompt: hi, scorer: nope}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(good)])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(good), str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: questions[0].scorer.type: unknown scorer 'nope'" in err
    assert "Traceback" not in err


def test_suite_argument_forms(write, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    extra = write("extra.yaml", "name: extra\nquestions:\n  - {id: a, prompt: hi, scorer: stops}\n")
    assert [p.name for p in resolve_suites("math")] == ["math.yaml"]
    assert [p.stem for p in resolve_suites("math, general")] == ["math", "general"]
    assert {p.stem for p in resolve_suites("all")} >= {"math", "general", "repetition"}
    assert resolve_suites(f"math,{extra}")[-1].name == "extra.yaml"
    assert len(resolve_suites("math,math")) == 1
    with pytest.raises(InputError, match="did you mean 'math'"):
        resolve_suites("maths")


def test_the_generator_prints_the_first_126_math_questions():
    import subprocess
    import sys

    import yaml

    out = subprocess.run(
        [sys.executable, str(PROJECT / "scripts/make_math_suite.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    generated = yaml.safe_load(out)
    suite = load_suite(PROJECT / "suites/math.yaml").questions
    assert len(generated) == 126
    assert [(g["id"], g["prompt"], g["answer"]) for g in generated] == [
        (q.id, q.prompt, q.answer) for q in suite[:126]
    ]
