"""`harness gate`: fail CI when a model got worse than the committed baseline, on paired evidence.

A raw "accuracy fell one point" is noise on a hundred questions. The gate compares the same
questions under the baseline and the candidate: an accuracy drop counts only when McNemar's exact
test on the flipped questions is significant (p < alpha) *and* larger than the allowed drop.
Floors (minimum accuracy) and ceilings on the rise of the repetition and no-stop rates are checked
as plain rates. Exit codes: 0 nothing regressed, 1 something did, 2 bad input.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .compare import Key, paired_outcomes
from .errors import InputError, Problem
from .results import RunFolder
from .sample import as_samples
from .stats import mcnemar_exact
from .yamlio import MarkedDict, load_yaml


@dataclass(frozen=True)
class SuiteRules:
    min_accuracy: float | None = None  # a floor on the candidate's accuracy
    max_accuracy_drop: float = 0.0  # a larger drop fails, when significant
    max_repetition_rise: float = 0.05
    max_no_stop_rise: float = 0.05


@dataclass(frozen=True)
class Rules:
    alpha: float = 0.05
    models: tuple[str, ...] | None = None  # candidates the gate applies to (None: all)
    strict_power: bool = False  # a suite too small for its max_accuracy_drop fails the gate
    defaults: SuiteRules = SuiteRules()
    suites: dict[str, SuiteRules] = field(default_factory=dict)

    def for_suite(self, name: str) -> SuiteRules:
        return self.suites.get(name, self.defaults)


RULE_KEYS = {f.name for f in fields(SuiteRules)}


def _rate(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _suite_rules(
    raw: Any, base: SuiteRules, where: str, file: str, problems: list[Problem]
) -> SuiteRules:
    if not isinstance(raw, dict):
        problems.append(
            Problem(file, "expected a mapping of rules", getattr(raw, "line", None), where)
        )
        return base
    values = {}
    for key, value in raw.items():
        line = raw.line_of(key) if isinstance(raw, MarkedDict) else None
        if key not in RULE_KEYS:
            problems.append(
                Problem(
                    file,
                    f"unknown rule (rules: {', '.join(sorted(RULE_KEYS))})",
                    line,
                    f"{where}.{key}",
                )
            )
        elif value is not None and not _rate(value):
            problems.append(
                Problem(
                    file,
                    f"expected a fraction between 0 and 1, got {value!r}",
                    line,
                    f"{where}.{key}",
                )
            )
        else:
            values[key] = value
    return replace(base, **values)


def load_rules(path: Path | None) -> Rules:
    """Rules YAML: alpha, models, defaults: {...}, suites: {name: {...}}; everything optional."""
    if path is None:
        return Rules()
    data = load_yaml(path)
    file = str(path)
    if data is None:
        return Rules()
    if not isinstance(data, MarkedDict):
        raise InputError(
            problems=[Problem(file, "expected a mapping (alpha, models, defaults, suites)", 1)]
        )
    problems: list[Problem] = []
    for key in data:
        if key not in ("alpha", "models", "strict_power", "defaults", "suites"):
            problems.append(
                Problem(
                    file,
                    "unknown key (known: alpha, models, strict_power, defaults, suites)",
                    data.line_of(key),
                    str(key),
                )
            )
    alpha = data.get("alpha", 0.05)
    if not _rate(alpha) or alpha == 0:
        problems.append(
            Problem(
                file,
                f"expected a significance level in (0, 1], got {alpha!r}",
                data.line_of("alpha"),
                "alpha",
            )
        )
    models = data.get("models")
    if models is not None and not (
        isinstance(models, list) and all(isinstance(m, str) for m in models)
    ):
        problems.append(
            Problem(
                file,
                f"expected a list of model names, got {models!r}",
                data.line_of("models"),
                "models",
            )
        )
    strict = data.get("strict_power", False)
    if not isinstance(strict, bool):
        problems.append(
            Problem(
                file,
                f"expected true or false, got {strict!r}",
                data.line_of("strict_power"),
                "strict_power",
            )
        )
    defaults = _suite_rules(data.get("defaults", {}), SuiteRules(), "defaults", file, problems)
    suites = {}
    raw_suites = data.get("suites", {})
    if not isinstance(raw_suites, dict):
        problems.append(
            Problem(
                file, "expected a mapping of suite names to rules", data.line_of("suites"), "suites"
            )
        )
        raw_suites = {}
    for name, raw in raw_suites.items():
        suites[str(name)] = _suite_rules(raw, defaults, f"suites.{name}", file, problems)
    if problems:
        raise InputError(problems=problems)
    return Rules(
        alpha=float(alpha),
        models=tuple(models) if models else None,
        strict_power=bool(strict),
        defaults=defaults,
        suites=suites,
    )


@dataclass(frozen=True)
class Check:
    model: str
    baseline_model: str
    suite: str
    rule: str
    baseline: float | None
    current: float
    limit: str
    passed: bool
    detail: str = ""  # the evidence: difference, interval, p-value
    broken: tuple[str, ...] = ()  # question ids right in the baseline, wrong now
    detectable: float | None = None  # the smallest drop the suite detects (80% power)


@dataclass
class GateResult:
    checks: list[Check]
    notes: list[str]
    warnings: list[str] = field(default_factory=list)  # rules a suite is too small to enforce

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def _flag_rates(
    base: dict[str, dict[str, bool]], cur: dict[str, dict[str, bool]], keys: list[str], flag: str
) -> tuple[float, float, float]:
    """Rates of a flag on the common questions, and McNemar's p on its flips."""
    b = [base[k][flag] for k in keys]
    c = [cur[k][flag] for k in keys]
    rose = sum(1 for x, y in zip(b, c, strict=True) if not x and y)
    fell = sum(1 for x, y in zip(b, c, strict=True) if x and not y)
    n = len(keys) or 1
    return sum(b) / n, sum(c) / n, mcnemar_exact(rose, fell)


def _pairs(
    run_models: list[str],
    baseline_models: list[str],
    rules: Rules,
    candidate: str | None,
    baseline_model: str | None,
) -> list[tuple[str, str]]:
    if candidate or baseline_model:
        cand = candidate or baseline_model
        base = baseline_model or candidate
        if cand not in run_models:
            raise InputError(
                f"the run has no model '{cand}' (it has {', '.join(run_models)})",
                argument="candidate",
            )
        if base not in baseline_models:
            raise InputError(
                f"the baseline has no model '{base}' (it has {', '.join(baseline_models)})",
                argument="baseline_model",
            )
        return [(cand, base)]
    gated = [m for m in run_models if rules.models is None or m in rules.models]
    pairs = [(m, m) for m in gated if m in baseline_models]
    if not pairs:
        raise InputError(
            f"no model of the run ({', '.join(run_models)}) has a namesake in the baseline "
            f"({', '.join(baseline_models)}){' among the rules models' if rules.models else ''}; "
            "name the candidate and the baseline model to pair them",
            argument="candidate",
        )
    return pairs


def gate(
    baseline: dict[str, Any],
    run_dir: Path,
    rules: Rules,
    *,
    candidate: str | None = None,
    baseline_model: str | None = None,
) -> GateResult:
    folder = RunFolder(run_dir)
    if not folder.samples.exists() or not folder.run_json.exists():
        raise InputError(f"{run_dir}: not a run folder (needs run.json and samples.jsonl)")
    run = folder.read_run()
    _refuse_other_judges(baseline, run)
    samples = as_samples(folder.read_samples())
    run_models = list(dict.fromkeys(s.model for s in samples))
    notes: list[str] = []
    changed = [
        s
        for s, info in run.get("suites", {}).items()
        if s in baseline["suites"] and baseline["suites"][s]["hash"] != info["hash"]
    ]
    if changed:
        raise InputError(
            "suite changed under the baseline: "
            + ", ".join(
                f"{s} (baseline {baseline['suites'][s]['hash']}, run {run['suites'][s]['hash']})"
                for s in changed
            )
            + "; the scores are not comparable. If the change is intended, make a new baseline "
            "(harness baseline RUN_DIR) and commit it with the suite"
        )
    common_suites = [s for s in run.get("suites", {}) if s in baseline["suites"]]
    for s in run.get("suites", {}):
        if s not in baseline["suites"]:
            notes.append(f"suite '{s}' is not in the baseline: not gated")
    if not common_suites:
        raise InputError(
            f"the run's suites ({', '.join(run.get('suites', {}))}) are not in the "
            f"baseline ({', '.join(baseline['suites'])})"
        )
    checks: list[Check] = []
    warnings: list[str] = []
    for cand, base_name in _pairs(
        run_models, list(baseline["models"]), rules, candidate, baseline_model
    ):
        b_model = baseline["models"][base_name]
        fp = run["models"].get(cand, {}).get("fingerprint")
        if fp and fp == b_model.get("fingerprint"):
            notes.append(f"{cand}: the same weights as the baseline's {base_name}")
        cur_q: dict[str, dict[str, dict[str, bool]]] = {}
        for s in samples:
            if s.model == cand:
                cur_q.setdefault(s.suite, {})[s.id] = s.outcome()
        for suite in common_suites:
            if suite not in cur_q or suite not in b_model["questions"]:
                notes.append(f"{cand}/{suite}: no samples on one side: not gated")
                continue
            checks.extend(
                _suite_checks(
                    cand,
                    base_name,
                    suite,
                    b_model["questions"][suite],
                    cur_q[suite],
                    rules,
                    notes,
                    warnings,
                )
            )
    return GateResult(checks, notes, warnings)


def _refuse_other_judges(baseline: dict[str, Any], run: dict[str, Any]) -> None:
    """A judged suite's verdicts are comparable only under the same judge (name and weights)
    and the same rubric: refuse, naming both sides, where the run and the baseline differ."""

    def judges(record: dict[str, Any], suite: str) -> list[tuple[str, str, str]]:
        entries = record.get("judges", {}).get(suite, [])
        return sorted((e["model"], e["fingerprint"], e["rubric_hash"]) for e in entries)

    def shown(entries: list[tuple[str, str, str]]) -> str:
        short = lambda h: h.split(":")[-1][:12]  # noqa: E731
        return " + ".join(f"judge {m} {short(f)}, rubric {short(r)}" for m, f, r in entries)

    differ = [
        (suite, judges(baseline, suite), judges(run, suite))
        for suite in run.get("suites", {})
        if suite in baseline["suites"] and judges(baseline, suite) != judges(run, suite)
    ]
    if differ:
        raise InputError(
            "judged differently from the baseline: "
            + "; ".join(
                f"{suite} (baseline: {shown(b) or 'no judge'}; run: {shown(r) or 'no judge'})"
                for suite, b, r in differ
            )
            + "; verdicts of different judges or rubrics are not comparable. Judge with the "
            "baseline's judge and rubric, or make a new baseline (harness baseline RUN_DIR)"
        )


def _suite_checks(
    cand: str,
    base_name: str,
    suite: str,
    base: dict[str, dict[str, bool]],
    cur: dict[str, dict[str, bool]],
    rules: Rules,
    notes: list[str],
    warnings: list[str],
) -> list[Check]:
    r = rules.for_suite(suite)
    keys = sorted(set(base) & set(cur))
    if len(keys) < len(cur) or len(keys) < len(base):
        notes.append(
            f"{cand}/{suite}: compared on the {len(keys)} questions both have "
            f"(baseline {len(base)}, run {len(cur)})"
        )
    out: list[Check] = []
    a: dict[Key, bool] = {(suite, k): base[k]["correct"] for k in keys}
    b: dict[Key, bool] = {(suite, k): cur[k]["correct"] for k in keys}
    (p,) = paired_outcomes(a, b, base_name, cand)
    drop = -p.difference
    significant = p.p_value < rules.alpha and p.difference < 0
    broken = tuple(k for k in keys if base[k]["correct"] and not cur[k]["correct"])
    detectable = p.detectable_drop(rules.alpha)
    shown = "none" if detectable is None else f"{100 * detectable:.0f}+ pts"
    evidence = (
        f"{100 * p.difference:+.1f} pts [{100 * p.ci95[0]:+.1f}, {100 * p.ci95[1]:+.1f}], "
        f"fixed {p.fixed}, broken {p.broken}, McNemar p={p.p_value:.3g}; detects drops of {shown}"
    )
    underpowered = detectable is None or detectable > r.max_accuracy_drop
    if underpowered:
        flipping = 100 * (p.fixed + p.broken) / p.n if p.n else 0.0
        warnings.append(
            f"{cand}/{suite}: n={p.n}, {flipping:.0f}% of questions flipping: the paired test "
            f"detects only drops of {shown} (80% power, exact McNemar, alpha {rules.alpha}), "
            f"more than the rule's max_accuracy_drop of {100 * r.max_accuracy_drop:.0f} pts; "
            "smaller regressions pass unseen (add questions: harness power)"
        )
    out.append(
        Check(
            cand,
            base_name,
            suite,
            "max_accuracy_drop",
            p.accuracy_a,
            p.accuracy_b,
            f"fails if drop > {100 * r.max_accuracy_drop:.1f} pts and p < {rules.alpha}",
            not (significant and drop > r.max_accuracy_drop),
            evidence,
            broken,
            detectable,
        )
    )
    if rules.strict_power:
        out.append(
            Check(
                cand,
                base_name,
                suite,
                "power",
                None,
                p.accuracy_b,
                f"detects drops of {100 * r.max_accuracy_drop:.0f} pts (strict power)",
                not underpowered,
                f"detects drops of {shown} with n={p.n}",
                (),
                detectable,
            )
        )
    if r.min_accuracy is not None:
        acc = sum(v["correct"] for v in cur.values()) / len(cur)
        out.append(
            Check(
                cand,
                base_name,
                suite,
                "min_accuracy",
                None,
                acc,
                f">= {100 * r.min_accuracy:.1f}%",
                acc >= r.min_accuracy,
                f"{sum(v['correct'] for v in cur.values())}/{len(cur)} right",
            )
        )
    for rule, flag, limit in (
        ("max_repetition_rise", "repeated", r.max_repetition_rise),
        ("max_no_stop_rise", "no_stop", r.max_no_stop_rise),  # ran into max_new_tokens
    ):
        before, now, pv = _flag_rates(base, cur, keys, flag)
        rise = now - before
        out.append(
            Check(
                cand,
                base_name,
                suite,
                rule,
                before,
                now,
                f"rise <= {100 * limit:.1f} pts",
                rise <= limit + 1e-12,
                f"{100 * rise:+.1f} pts, McNemar p={pv:.3g}",
            )
        )
    return out


def format_result(result: GateResult) -> str:
    from tabulate import tabulate

    rows = []
    for c in result.checks:
        base = "" if c.baseline is None else f"{100 * c.baseline:.1f}%"
        rows.append(
            [
                f"{c.model}" + (f" (vs {c.baseline_model})" if c.model != c.baseline_model else ""),
                c.suite,
                c.rule,
                f"{base} -> {100 * c.current:.1f}%" if base else f"{100 * c.current:.1f}%",
                c.detail,
                c.limit,
                "pass" if c.passed else "FAIL",
            ]
        )
    table = tabulate(
        rows,
        headers=["model", "suite", "rule", "baseline -> current", "evidence", "limit", "verdict"],
    )
    lines = [table, ""]
    lines += [f"note: {n}" for n in result.notes]
    lines += [f"warning: {w}" for w in result.warnings]
    failed = [c for c in result.checks if not c.passed]
    if failed:
        lines.append(f"GATE FAILED: {len(failed)} check(s) regressed:")
        for c in failed:
            what = (
                f"accuracy {100 * c.baseline:.1f}% -> {100 * c.current:.1f}% "
                f"({100 * (c.baseline - c.current):.1f} pts drop; {c.detail})"
                if c.rule == "max_accuracy_drop"
                else f"{c.detail} (limit {c.limit})"
            )
            lines.append(f"  {c.model} / {c.suite}: {c.rule}: {what}")
    else:
        lines.append(f"gate passed: {len(result.checks)} check(s), nothing regressed")
    return "\n".join(lines)


def write_junit(result: GateResult, path: Path) -> None:
    """One test case per rule and suite, and one per question that went from right to wrong."""
    root = ET.Element("testsuites", name="harness gate")
    by_model: dict[str, list[Check]] = {}
    for c in result.checks:
        by_model.setdefault(c.model, []).append(c)
    total = failures = 0
    for model, checks in by_model.items():
        cases = []
        for c in checks:
            cases.append(
                (
                    f"{c.suite}: {c.rule}",
                    f"harness.gate.{model}.{c.suite}",
                    None if c.passed else f"{c.rule}: {c.detail} (limit {c.limit})",
                )
            )
            if c.rule == "max_accuracy_drop":
                # broken questions fail the build only where the suite's drop did
                note = f"right in the baseline ({c.baseline_model}), wrong now"
                for qid in c.broken:
                    cases.append(
                        (
                            f"{c.suite}/{qid}",
                            f"harness.questions.{model}.{c.suite}",
                            None if c.passed else note,
                        )
                    )
        suite_el = ET.SubElement(
            root,
            "testsuite",
            name=f"harness gate: {model}",
            tests=str(len(cases)),
            failures=str(sum(1 for *_, f in cases if f)),
            errors="0",
        )
        for name, classname, failure in cases:
            case = ET.SubElement(suite_el, "testcase", name=name, classname=classname, time="0")
            if failure:
                ET.SubElement(case, "failure", message=failure, type="regression").text = failure
        total += len(cases)
        failures += sum(1 for *_, f in cases if f)
    root.set("tests", str(total))
    root.set("failures", str(failures))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
