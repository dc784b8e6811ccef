"""The gate's verdict for people (a table and one line per failure) and for CI (JUnit XML).

Nothing here knows a rule by name: each check carries its own failure message and the questions
it blames, so a registered rule shows up in both without touching this module.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..files import write_atomic
from .evaluation import Check, GateResult


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
        lines += [f"  {c.model} / {c.suite}: {c.rule}: {c.message}" for c in failed]
    else:
        lines.append(f"gate passed: {len(result.checks)} check(s), nothing regressed")
    return "\n".join(lines)


Case = tuple[str, str, str | None]  # name, classname, failure message (None: passed)


def _cases(model: str, c: Check) -> list[Case]:
    """A check's own case, then one per question it blames: those fail only where it failed,
    since one broken question is noise unless the suite's verdict says otherwise."""
    own = None if c.passed else f"{c.rule}: {c.detail} (limit {c.limit})"
    note = None if c.passed else f"right in the baseline ({c.baseline_model}), wrong now"
    return [(f"{c.suite}: {c.rule}", f"harness.gate.{model}.{c.suite}", own)] + [
        (f"{c.suite}/{qid}", f"harness.questions.{model}.{c.suite}", note) for qid in c.broken
    ]


def write_junit(result: GateResult, path: Path) -> None:
    """One test case per rule and suite, and one per question that went from right to wrong."""
    root = ET.Element("testsuites", name="harness gate")
    by_model: dict[str, list[Check]] = {}
    for c in result.checks:
        by_model.setdefault(c.model, []).append(c)
    total = failures = 0
    for model, checks in by_model.items():
        cases = [case for c in checks for case in _cases(model, c)]
        failed = sum(1 for *_, f in cases if f)
        suite_el = ET.SubElement(
            root,
            "testsuite",
            name=f"harness gate: {model}",
            tests=str(len(cases)),
            failures=str(failed),
            errors="0",
        )
        for name, classname, failure in cases:
            case = ET.SubElement(suite_el, "testcase", name=name, classname=classname, time="0")
            if failure:
                ET.SubElement(case, "failure", message=failure, type="regression").text = failure
        total += len(cases)
        failures += failed
    root.set("tests", str(total))
    root.set("failures", str(failures))
    write_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
