"""Suites whose questions come from data files, multi-turn questions, and option ranges."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.chat import render
from harness.errors import InputError
from harness.models import ModelSpec, load
from harness.results import RunFolder
from harness.sft.overlap import find_overlaps
from harness.suites import Suite, load_suite

from .conftest import PROJECT, run_args, run_cli

ROWS = [
    {"question": "Ann has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"},
    {"question": "A box holds 12 eggs. How many in 2 boxes?", "answer": "12 * 2\n#### 24"},
    {"question": "What is 1,000 + 234?", "answer": "#### 1,234"},
]
SOURCE = """name: local
source: {{path: {path}, id: "wp-{{idx}}", prompt: "{{question}}", answer: "{{answer}}",
          answer_pattern: '#### (-?[\\d,.]+)'}}
defaults: {{scorer: numeric, max_new_tokens: 8}}
"""


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("form", ["jsonl", "csv", "parquet", "datasets"])
def test_a_suite_reads_its_questions_from_a_data_file(tmp_path, form):
    if form == "jsonl":
        data = _jsonl(tmp_path / "d.jsonl", ROWS)
    elif form == "csv":
        data = tmp_path / "d.csv"
        pd.DataFrame(ROWS).to_csv(data, index=False)
    elif form == "parquet":
        data = tmp_path / "d.parquet"
        pd.DataFrame(ROWS).to_parquet(data, index=False)
    else:
        import datasets

        data = tmp_path / "ds"
        datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(data))
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(SOURCE.format(path=data.name))  # relative to the suite file
    suite = load_suite(suite_file)
    assert [q.id for q in suite.questions] == ["wp-0", "wp-1", "wp-2"]
    assert [q.answer for q in suite.questions] == [7, 24, 1234]
    assert suite.questions[1].prompt == ROWS[1]["question"]
    assert suite.questions[0].scorers[0].type == "numeric"
    out = tmp_path / "run"  # and end to end: decoded, scored, reported
    assert run_cli(*run_args(suite_file, "sft", out, "--self-check", "0")) == 0
    rows = RunFolder(out).read_samples()
    assert sorted((r["id"], r["answer"]) for r in rows) == [
        ("wp-0", 7),
        ("wp-1", 24),
        ("wp-2", 1234),
    ]
    assert (out / "report.html").is_file()


def test_the_hash_follows_the_data_and_bad_rows_name_file_and_row(tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", ROWS)
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(SOURCE.format(path="d.jsonl"))
    before = load_suite(suite_file).hash
    _jsonl(data, [*ROWS[:2], {**ROWS[2], "answer": "#### 1,235"}])
    assert load_suite(suite_file).hash != before
    _jsonl(data, [ROWS[0], {"query": "x", "answer": "#### 1"}, {**ROWS[2], "answer": "none"}])
    with pytest.raises(InputError) as info:
        load_suite(suite_file)
    text = str(info.value)
    assert f"{data}:2: source.prompt: no field 'question' (fields: query, answer)" in text
    assert f"{data}:3: answer: answer_pattern found nothing in 'none'" in text
    suite_file.write_text(SOURCE.format(path="missing.jsonl"))
    with pytest.raises(InputError, match=r"source.path: .*missing.jsonl does not exist"):
        load_suite(suite_file)


def test_the_shipped_example_runs_end_to_end(tmp_path):
    example = PROJECT / "examples" / "suites" / "word-problems.yaml"
    out = tmp_path / "run"
    assert run_cli(*run_args(example, "sft", out, "--self-check", "0")) == 0
    rows = RunFolder(out).read_samples()
    assert len(rows) == len(load_suite(example).questions) >= 10
    assert all(isinstance(r["answer"], int) for r in rows)


def test_multi_turn_questions_render_their_history_and_are_checked(random_model_dir):
    suite = Suite.from_dict(
        {
            "name": "chat",
            "defaults": {"scorer": "numeric"},
            "questions": [
                {
                    "id": "follow-up",
                    "messages": [
                        {"role": "system", "content": "Answer with a number."},
                        {"role": "user", "content": "What is 2 + 2?"},
                        {"role": "assistant", "content": "4"},
                        {"role": "user", "content": "And twice that?"},
                    ],
                    "answer": 8,
                }
            ],
        }
    )
    (q,) = suite.questions
    assert q.prompt == "And twice that?" and q.system == "Answer with a number."
    assert q.history == (("user", "What is 2 + 2?"), ("assistant", "4"))
    assert q.user_turns() == ["What is 2 + 2?", "And twice that?"]
    lm = load(ModelSpec("r", "path", str(random_model_dir)), device="cpu")
    text = render(lm.tokenizer, q.prompt, q.system, q.history)
    assert text.index("What is 2 + 2?") < text.index("4<|im_end|>") < text.index("And twice")
    assert "Answer with a number." in text
    # the contamination check sees the earlier user turns too
    hits = find_overlaps([("row 1", "What is 2 + 2?")], [suite])
    assert [(h.question, h.kind) for h in hits] == [("follow-up", "exact")]


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}], "last turn"),
        ([{"role": "robot", "content": "hi"}], "expected {role: user|assistant"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "system only"),
        ([], "expected a non-empty list"),
    ],
)
def test_bad_conversations_name_the_turn(messages, problem):
    with pytest.raises(InputError, match="questions\\[0\\].messages") as info:
        question = {"id": "a", "messages": messages, "answer": 1, "scorer": "numeric"}
        Suite.from_dict({"name": "s", "questions": [question]})
    assert problem in str(info.value)


def test_a_multi_turn_suite_runs_and_reports_its_turns(tmp_path, write):
    suite = write(
        "chat.yaml",
        "name: chat\ndefaults: {scorer: numeric, max_new_tokens: 6}\nquestions:\n"
        "  - id: q1\n    answer: 8\n    messages:\n"
        "      - {role: user, content: 'What is 2 + 2?'}\n"
        "      - {role: assistant, content: '4'}\n"
        "      - {role: user, content: 'And twice that?'}\n",
    )
    out = tmp_path / "run"
    assert run_cli(*run_args(suite, "sft", out, "--self-check", "0")) == 0
    (row,) = RunFolder(out).read_samples()
    assert row["history"] == [["user", "What is 2 + 2?"], ["assistant", "4"]]
    assert "What is 2 + 2?" in row["prompt"] and row["question"] == "And twice that?"
    html = (out / "report.html").read_text()
    assert "assistant: 4" in html


@pytest.mark.parametrize(
    ("scorer", "problem"),
    [
        ({"type": "numeric", "tolerance": -1}, "tolerance: expected a number >= 0, got -1"),
        ({"type": "max_words", "limit": 0}, "limit: expected a number >= 1, got 0"),
        ({"type": "no_repetition", "max_seq_rep": 2}, "from 0 to 1, got 2"),
    ],
)
def test_option_values_out_of_range_are_refused(scorer, problem):
    with pytest.raises(InputError, match=problem):
        question = {"id": "a", "prompt": "p", "answer": 1, "scorer": scorer}
        Suite.from_dict({"name": "s", "questions": [question]})
