"""The schema checker on its own: a small dataclass against marked YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pytest

from harness.errors import InputError
from harness.schema import (
    At,
    Expect,
    NonEmpty,
    OneOf,
    Positive,
    Range,
    Report,
    Required,
    Via,
    Wording,
    check,
    noun,
    unknown_key_listing,
)
from harness.yamlio import parse_yaml


@dataclass(frozen=True, kw_only=True)
class Limits:
    memory: Annotated[int, Positive()] = 1
    share: Annotated[float, Range(0, 1)] = 0.5


def _upper(value: Any, at: At) -> str | None:
    if not isinstance(value, str):
        at.add(f"expected a word, got {value!r}")
        return None
    return value.upper()


@dataclass(frozen=True, kw_only=True)
class Server:
    host: Annotated[str, NonEmpty(), Required("missing; the machine to connect to")]
    port: Annotated[int, Range(1, 65535)] = 8080
    mode: Literal["fast", "safe"] = "safe"
    tags: tuple[str, ...] = ()
    labels: dict[str, int] = field(default_factory=dict)
    timeout: int | float | None = None
    verbose: bool = False
    level: Annotated[float, Positive(), Range(high=1), Expect("a level in (0, 1]")] = 0.1
    limits: Limits = field(default_factory=Limits)
    shout: Annotated[str | None, Via(_upper)] = None


def checked(text: str, **kwargs: Any) -> tuple[Any, list[str]]:
    report = Report("s.yaml")
    fields = check(parse_yaml(text, "s.yaml"), Server, report, **kwargs)
    return fields, [str(p) for p in report.problems]


def test_a_valid_mapping_builds_the_dataclass_with_typed_values():
    fields, problems = checked(
        "host: db\nport: 5432\nmode: fast\ntags: [a, b]\nlabels: {x: 1}\ntimeout: 2.5\n"
        "verbose: true\nlimits: {memory: 4}\nshout: hey\n"
    )
    assert problems == [] and fields.ok
    assert fields.given == {"host", "port", "mode", "tags", "labels", "timeout", "verbose"} | {
        "limits",
        "shout",
    }
    server = fields.build()
    assert server == Server(
        host="db",
        port=5432,
        mode="fast",
        tags=("a", "b"),  # a YAML list becomes the tuple the field declares
        labels={"x": 1},
        timeout=2.5,
        verbose=True,
        limits=Limits(memory=4),
        shout="HEY",
    )


def test_every_problem_is_reported_with_its_line_and_field():
    _, problems = checked(
        "host: '  '\n"
        "port: 0\n"
        "mode: slow\n"
        "tags: [a, 1]\n"
        "labels: {x: one}\n"
        "timeout: soon\n"
        "verbose: 1\n"
        "level: 0\n"
        "limits:\n"
        "  memory: -2\n"
        "  share: 2\n"
        "shout: 5\n"
    )
    assert problems == [
        "s.yaml:1: host: expected a non-empty string, got '  '",
        "s.yaml:2: port: expected a number from 1 to 65535, got 0",
        "s.yaml:3: mode: expected one of 'fast', 'safe', got 'slow'",
        "s.yaml:4: tags: expected a list of strings, got ['a', 1]",
        "s.yaml:5: labels: expected a mapping of strings to integers, got {'x': 'one'}",
        "s.yaml:6: timeout: expected an integer or a number, got 'soon'",
        "s.yaml:7: verbose: expected true or false, got 1",
        "s.yaml:8: level: expected a level in (0, 1], got 0",
        "s.yaml:10: limits.memory: expected a positive integer, got -2",
        "s.yaml:11: limits.share: expected a number from 0 to 1, got 2",
        "s.yaml:12: shout: expected a word, got 5",
    ]


def test_unknown_and_duplicate_keys_come_first_then_fields_in_order():
    fields, problems = checked("prot: 1\nhost: a\nhost: b\nlimits: {memroy: 2}\n")
    assert problems == [
        "s.yaml:3: host: duplicate key (YAML would keep only the last)",
        "s.yaml:1: prot: unknown key; did you mean 'port'?",
        "s.yaml:4: limits.memroy: unknown key; did you mean 'memory'?",
    ]
    assert not fields.ok and fields.values["host"] == "b"
    assert fields.invalid == {"limits"}  # its own unknown key: the nested mapping is not used
    assert len(fields.problems) == 3


def test_unknown_key_wording_and_duplicates_are_the_callers_choice():
    _, problems = checked(
        "host: a\nhost: b\ncolour: red\n",
        unknown=lambda key, known: f"unknown key (known: {', '.join(known[:2])})",
        duplicates=False,
    )
    assert problems == ["s.yaml:3: colour: unknown key (known: host, port)"]


def test_missing_required_fields_are_reported_at_the_mapping():
    fields, problems = checked("port: 80\n")
    assert problems == ["s.yaml:1: host: missing; the machine to connect to"]
    assert fields.invalid == {"host"} and not fields.ok
    _, problems = checked("port: 80\nhost: null\n")  # null counts as missing
    assert problems == ["s.yaml:1: host: missing; the machine to connect to"]


@dataclass(frozen=True, kw_only=True)
class Address:
    host: str | None = None
    socket: str | None = None
    port: Annotated[int, Range(1, 65535)] = 8080


def test_a_rule_on_the_keys_runs_between_the_unknown_keys_and_the_values():
    def one_address(data: Any) -> None:
        if ("host" in data) == ("socket" in data):
            report.add(data.line, None, "give host or socket")

    report = Report("a.yaml")
    text = "port: 0\nhost: a\nsocket: /run/s\nprot: 1\n"
    fields = check(parse_yaml(text, "a.yaml"), Address, report, keys=one_address)
    assert [str(p) for p in report.problems] == [
        "a.yaml:4: prot: unknown key; did you mean 'port'?",
        "a.yaml:1: give host or socket",
        "a.yaml:1: port: expected a number from 1 to 65535, got 0",
    ]
    assert len(fields.problems) == 3 and fields.invalid == {"port"}
    report = Report("a.yaml")
    check(parse_yaml(text, "a.yaml"), Address, report, keys=one_address, order="file")
    assert [str(p) for p in report.problems] == [  # in file order, the rule on keys comes first
        "a.yaml:1: give host or socket",
        "a.yaml:1: port: expected a number from 1 to 65535, got 0",
        "a.yaml:4: prot: unknown key; did you mean 'port'?",
    ]


def test_caller_defaults_replace_the_dataclass_ones_and_make_fields_optional():
    fields, problems = checked("port: 80\n", defaults={"host": "localhost", "mode": "fast"})
    assert problems == []
    assert fields.build() == Server(host="localhost", port=80, mode="fast")
    assert fields.given == {"port"}


def test_invalid_fields_keep_their_defaults_and_the_rest_their_values():
    fields, _ = checked("host: a\nport: x\ntags: [t]\nlimits: {memory: 0}\n")
    assert fields.invalid == {"port", "limits"}
    assert fields.values["port"] == 8080 and fields.values["tags"] == ("t",)
    assert fields.values["limits"] == Limits()


SEEN: dict[str, Any] = {}


def _record(value: Any, at: At) -> Any:
    SEEN.update(value=value, port=at.earlier["port"], line=at.line, field=at.field)
    return value


@dataclass(frozen=True)
class Probe:
    port: int = 1
    custom: Annotated[Any, Via(_record)] = "unset"


@dataclass(frozen=True, kw_only=True)
class Ask:
    prompt: Annotated[str, Required("missing; the question", unless=("messages",))]
    messages: list[str] | None = None


def test_a_parser_sees_null_and_the_fields_before_it():
    report = Report("p.yaml")
    fields = check(parse_yaml("port: 7\ncustom: null\n", "p.yaml"), Probe, report, "top")
    assert report.problems == [] and fields.values["custom"] is None
    assert SEEN == {"value": None, "port": 7, "line": 2, "field": "top.custom"}


def test_required_unless_another_key_stands_in():
    report = Report("a.yaml")
    fields = check(parse_yaml("messages: [hi]\nprompt: 5\n", "a.yaml"), Ask, report)
    assert report.problems == [] and fields.values["prompt"] is None  # replaced, so not read
    check(parse_yaml("{}\n", "a.yaml"), Ask, report, "q")
    assert [str(p) for p in report.problems] == ["a.yaml:1: q.prompt: missing; the question"]


def test_plain_dicts_have_no_lines_and_raise_lists_every_problem():
    report = Report("<server>")
    check({"host": "", "port": "x"}, Server, report)
    with pytest.raises(InputError) as info:
        report.raise_if_any()
    assert str(info.value) == (
        "<server>: host: expected a non-empty string, got ''\n"
        "<server>: port: expected an integer, got 'x'"
    )
    Report("quiet").raise_if_any()  # nothing found: nothing raised


def test_nouns():
    assert noun(str | None) == "a string"
    assert noun(int) == "an integer"
    assert noun(list[str]) == "a list of strings"
    assert noun(Limits) == noun(dict) == noun(dict[Any, Any]) == "a mapping"
    assert noun(tuple[Any, ...]) == "a list"
    assert noun(Literal["a", "b"]) == "one of 'a', 'b'"


def test_open_bounds_leave_the_bound_itself_out():
    dropout = Range(0, 1, high_open=True)
    assert dropout.admits(0) and dropout.admits(0.99) and not dropout.admits(1)
    assert dropout.problem(1) == "expected a number in [0, 1), got 1"
    assert Range(0, low_open=True).problem(0) == "expected a number > 0, got 0"
    assert Range(high=1, high_open=True).problem(2) == "expected a number < 1, got 2"
    assert Range(0, 1, low_open=True).span() == "in (0, 1]"
    assert Range(1).problem(0) == "expected a number >= 1, got 0" and Range(1).problem(1) is None


ASKED: list[str] = []


def _optimizers() -> list[str]:
    ASKED.append("optimizers")
    return ["adam", "sgd"]


@dataclass(frozen=True, kw_only=True)
class Training:
    rate: Annotated[float, Range(0), Range(0, low_open=True)] = 0.1
    steps: Annotated[int, Range(1)] = 10
    optimizer: Annotated[str, OneOf(_optimizers)] = "adam"
    scheduler: Annotated[str, OneOf(lambda: ["cosine"]), Expect("a scheduler's name")] = "cosine"
    share: Annotated[float, Range(0, 1)] = 0.5


def train_problems(text: str, **kwargs: Any) -> list[str]:
    report = Report("t.yaml")
    check(parse_yaml(text, "t.yaml"), Training, report, **kwargs)
    return [str(p) for p in report.problems]


def test_run_time_choices_are_asked_for_only_when_a_value_is_checked():
    ASKED.clear()
    assert train_problems("steps: 2\n") == [] and ASKED == []
    assert train_problems("optimizer: adamw\nscheduler: linear\n") == [
        "t.yaml:1: optimizer: expected one of 'adam', 'sgd', got 'adamw'",
        "t.yaml:2: scheduler: expected a scheduler's name, got 'linear'",
    ]
    assert ASKED == ["optimizers"]
    assert train_problems("optimizer: 5\n") == ["t.yaml:1: optimizer: expected a string, got 5"]


class Terse(Wording):
    def noun(self, tp: Any) -> str:
        return tp.__name__

    def out_of_range(self, bounds: Range, value: Any) -> str:
        side = "above" if bounds.low_open else "at least"
        return f"must be {side} {bounds.low}, got {value!r}"

    def not_a_choice(self, choices: Any, value: Any) -> str:
        return f"{value!r} is not one of: {', '.join(choices)}"


def test_a_wording_words_every_problem_of_a_value_and_ranges_apply_in_order():
    problems = train_problems(
        "rate: -1\nsteps: x\noptimizer: adamw\nscheduler: 5\n", wording=Terse()
    )
    assert problems == [
        "t.yaml:1: rate: must be at least 0, got -1",  # the first range refused it
        "t.yaml:2: steps: expected int, got 'x'",
        "t.yaml:3: optimizer: 'adamw' is not one of: adam, sgd",
        "t.yaml:4: scheduler: expected a scheduler's name, got 5",  # Expect still wins
    ]
    assert train_problems("rate: 0\n", wording=Terse()) == [
        "t.yaml:1: rate: must be above 0, got 0"
    ]


EARLIER: list[dict[str, Any]] = []


def _earlier(value: Any, at: At) -> Any:
    EARLIER.append(dict(at.earlier))
    return value


@dataclass(frozen=True)
class Order:
    port: int = 1
    first: Annotated[Any, Via(_earlier)] = None
    second: Annotated[Any, Via(_earlier)] = None


def test_file_order_reports_top_to_bottom_and_parsers_see_the_keys_above():
    text = "share: 2\nsteps: 0\nstesp: 1\nrate: -1\n"
    assert train_problems(text) == [
        "t.yaml:3: stesp: unknown key; did you mean 'steps'?",
        "t.yaml:4: rate: expected a number >= 0, got -1",
        "t.yaml:2: steps: expected a number >= 1, got 0",
        "t.yaml:1: share: expected a number from 0 to 1, got 2",
    ]
    assert train_problems(text, order="file", unknown=unknown_key_listing) == [
        "t.yaml:1: share: expected a number from 0 to 1, got 2",
        "t.yaml:2: steps: expected a number >= 1, got 0",
        "t.yaml:3: stesp: unknown key (known: rate, steps, optimizer, scheduler, share)",
        "t.yaml:4: rate: expected a number >= 0, got -1",
    ]
    EARLIER.clear()
    data = parse_yaml("second: 2\nport: 7\nfirst: 1\n", "o.yaml")
    fields = check(data, Order, Report("o.yaml"), order="file")
    assert EARLIER == [{}, {"second": 2, "port": 7}]  # the keys above each
    assert list(fields.values) == ["port", "first", "second"]  # the fields' own order
    assert fields.build() == Order(port=7, first=1, second=2)


def test_integers_for_float_fields_read_as_floats():
    report = Report("t.yaml")
    fields = check(parse_yaml("rate: 2\nsteps: 3\n", "t.yaml"), Training, report)
    assert report.problems == []
    assert type(fields.values["rate"]) is float and type(fields.values["steps"]) is int
    server, _ = checked("host: a\ntimeout: 2\n")
    assert type(server.values["timeout"]) is int  # an int is one of the field's types
