"""Every run re-decodes a seeded sample one at a time and says, loudly, when outputs moved; every
sample records how close its greedy path came to another token."""

from __future__ import annotations

import dataclasses
import json

from harness import runner
from harness.results import RunFolder
from harness.selfcheck import sample_keys

from .conftest import run_args, run_cli


def _run(tmp_path, name: str, *extra: str) -> tuple[dict, str, str]:
    out = tmp_path / name
    code = run_cli(*run_args("math", "base", out, "--limit", "30", *extra))
    assert code == 0
    return (
        json.loads((out / "run.json").read_text()),
        (out / "report.html").read_text(),
        (out / "report.md").read_text(),
    )


def test_a_run_records_its_decoder_and_a_passing_self_check(tmp_path, capsys):
    run, html, md = _run(tmp_path, "ok")
    info = run["models"]["base"]
    assert info["decoding"]["decoder"] == "hf" and info["decoding"]["batch_invariant"] is False
    assert info["self_check"] == {
        "questions": 8,
        "identical": 8,
        "batch_size": 1,
        "mismatches": [],
    }
    assert "self-check: 8/8 identical decoded one at a time" in capsys.readouterr().out
    assert 'class="self-check"><span class="ok">8/8 identical' in html
    assert "self-check-warning" not in html and "Warning" not in md
    samples = RunFolder(tmp_path / "ok").read_samples()
    assert all(isinstance(r["min_margin"], float) and r["min_margin"] >= 0 for r in samples)


def test_a_batch_dependent_output_fails_the_self_check_loudly(tmp_path, capsys, monkeypatch):
    real = runner.generate_batch

    def moody(lm, batch, decoder="auto"):  # alone, one question answers differently
        out = real(lm, batch, decoder)
        if len(batch) == 1:
            out = [dataclasses.replace(g, output=g.output + " (alone)") for g in out]
        return out

    monkeypatch.setattr(runner, "generate_batch", moody)
    run, html, md = _run(tmp_path, "bad", "--self-check", "3")
    check = run["models"]["base"]["self_check"]
    assert (check["questions"], check["identical"]) == (3, 0)
    assert all(m["alone"] == m["batched"] + " (alone)" for m in check["mismatches"])
    out = capsys.readouterr().out
    assert "WARNING self-check: 3 of 3 outputs changed when decoded one at a time" in out
    assert 'id="self-check-warning"' in html and "Self-check failed for <b>base</b>" in html
    assert "**Warning: self-check failed for `base`**" in md


def test_the_sample_is_seeded_and_zero_turns_the_check_off(tmp_path):
    records = [
        {"model": "m", "suite": "s", "id": f"q{i}", "error": None if i != 3 else "too long"}
        for i in range(40)
    ]
    first = sample_keys(records, "m", 8)
    assert first == sample_keys(list(reversed(records)), "m", 8)  # order of the file is moot
    assert len(set(first)) == 8 and ("s", "q3") not in first  # errors are not re-decoded
    assert sample_keys(records, "m", 100) == sample_keys(records, "m", 39)
    run, html, _ = _run(tmp_path, "off", "--self-check", "0")
    assert "self_check" not in run["models"]["base"]
    assert "not run" in html


def test_the_report_lists_the_closest_calls_first(tmp_path):
    _run(tmp_path, "close", "--self-check", "0")
    folder = RunFolder(tmp_path / "close")
    rows = folder.read_samples()
    for i, r in enumerate(rows):  # known margins: three under float32's 5e-4, one just above
        r["min_margin"] = {3: 2e-4, 7: 1e-5, 11: 4.9e-4, 12: 5e-4}.get(i, 1.0 + i)
    folder.rewrite_samples(rows)
    assert run_cli("report", str(folder.path)) == 0
    html = (folder.path / "report.html").read_text()
    md = (folder.path / "report.md").read_text()
    table = html[html.index('id="fragile"') : html.index("</table>", html.index('id="fragile"'))]
    listed = [table.index(f"<code>{rows[i]['id']}</code>") for i in (7, 3, 11)]
    assert listed == sorted(listed) and f"<code>{rows[12]['id']}</code>" not in table
    assert "Below that gap: base 3 sample(s)" in html
    assert "Fragile verdicts: base 3 sample(s)" in md
    cell = html[html.index(f'data-id="{rows[7]["id"]}"') :]
    assert "margin 1e-05" in cell[: cell.index("</tr>")]


def test_a_fine_tuned_model_wins_its_greedy_choices_by_more(tmp_path):
    """The margins are the model's own: the embedded sft, answering in its training format,
    is far from ties where the base model rambles through near-ties."""
    out = tmp_path / "pair"
    assert run_cli(*run_args("math", "base,sft", out, "--limit", "12", "--self-check", "0")) == 0
    rows = RunFolder(out).read_samples()
    margins = {m: sorted(r["min_margin"] for r in rows if r["model"] == m) for m in ("base", "sft")}
    assert margins["sft"][6] > 10 * margins["base"][6]  # medians of 12
