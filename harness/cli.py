"""The `harness` command: parses arguments, calls one function per command, maps errors to exits.

Exit codes: 0 success; 1 an unexpected failure (a bug: traceback shown); 2 a bad input or request
(one clear message per problem, no traceback unless --debug); 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from .errors import Contaminated, HarnessError, InputError, Problem, RunExists
from .models.spec import DTYPES
from .paths import DEFAULT_RUNS_DIR, display_path
from .runner import DECODERS
from .selfcheck import DEFAULT_QUESTIONS


def _at_least(value: str, low: int, expected: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = low - 1
    if n < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got '{value}'")
    return n


def _positive(value: str) -> int:
    return _at_least(value, 1, "a positive integer")


def _count(value: str) -> int:
    return _at_least(value, 0, "0 or a positive integer")


def _fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got '{value}'")
    return x


def _batch_size(value: str) -> int | None:
    return None if value == "auto" else _positive(value)


def cmd_run(args: argparse.Namespace) -> int:
    from .evaluation import DecodeSettings, evaluate
    from .models import resolve_many
    from .suites import load_suites
    from .tables import summary_table, tag_table

    if args.resume and not args.out:
        raise InputError("--resume continues the run in --out; name the folder with --out")
    if args.gate:  # a missing baseline or bad rules should fail before the run, not after
        from .baseline import read_baseline
        from .gating import load_rules

        read_baseline(Path(args.gate))
        load_rules(args.rules)
    suites = load_suites(args.suite)
    specs = resolve_many(args.models)
    out = args.out or DEFAULT_RUNS_DIR / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    settings = DecodeSettings(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        dtype=args.dtype,
        limit=args.limit,
        decoder=args.decoder,
        self_check=args.self_check,
    )
    n_questions = sum(len(s.questions[: args.limit] if args.limit else s.questions) for s in suites)
    print(
        f"run {display_path(Path(out))}: {len(suites)} suite(s), {n_questions} question(s), "
        f"{len(specs)} model(s)"
    )
    summary = evaluate(
        suites,
        specs,
        Path(out),
        settings,
        resume=args.resume,
        trust_remote_code=args.trust_remote_code,
        progress=not args.quiet,
    )
    if summary is None:  # a rank other than 0 under torchrun / accelerate launch
        return 0
    print()
    print(summary_table(summary))
    tags = tag_table(summary)
    if tags:
        print()
        print(tags)
    from .compare import model_pairs, paired
    from .report import write_reports
    from .results import RunFolder
    from .tables import paired_table

    pairs = model_pairs([s.name for s in specs])
    if pairs:  # the answer to "did it help?": per question, what flipped
        samples = RunFolder(Path(out)).read_samples()
        print()
        print(paired_table([p for a, b in pairs for p in paired(samples, a, b)]))
    write_reports(Path(out))
    print(
        f"\nwrote {display_path(Path(out))}/ (run.json, samples.jsonl, summary.json, "
        "report.html, report.md)"
    )
    if args.gate:
        print()
        return _gate(args.gate, Path(out), args.rules, args.junit, None, None, args.strict_power)
    return 0


def _gate(
    baseline_dir: Path,
    run_dir: Path,
    rules_file: Path | None,
    junit: Path | None,
    candidate: str | None,
    baseline_model: str | None,
    strict_power: bool = False,
) -> int:
    from dataclasses import replace

    from .baseline import read_baseline
    from .gating import format_result, gate, load_rules, write_junit

    rules = load_rules(rules_file)
    result = gate(
        read_baseline(Path(baseline_dir)),
        run_dir,
        replace(rules, strict_power=rules.strict_power or strict_power),
        candidate=candidate,
        baseline_model=baseline_model,
    )
    print(format_result(result))
    if junit:
        write_junit(result, Path(junit))
        print(f"wrote {display_path(Path(junit))}")
    return 0 if result.passed else 1


def cmd_gate(args: argparse.Namespace) -> int:
    return _gate(
        args.baseline,
        Path(args.run_dir),
        args.rules,
        args.junit,
        args.candidate,
        args.baseline_model,
        args.strict_power,
    )


def cmd_power(args: argparse.Namespace) -> int:
    from .power import min_detectable_drop, questions_needed

    if (args.n is None) == (args.drop is None):
        raise InputError("give --n (the drop n questions detect) or --drop (questions it needs)")
    what = f"{100 * args.discordant:.0f}% of questions flipping, alpha {args.alpha}"
    if args.drop is not None:
        n = questions_needed(args.drop, args.discordant, args.alpha)
        print(f"{n} questions detect a drop of {100 * args.drop:.0f} points ({what}, 80% power)")
        return 0
    drop = min_detectable_drop(args.n, args.discordant, args.alpha)
    if drop is None:
        print(f"n={args.n}: too few questions to detect any drop ({what})")
    else:
        print(f"n={args.n}: detects a drop of {100 * drop:.1f} points or more ({what}, 80% power)")
    print("(exact: McNemar's two-sided exact test, the gate's, summed over the flips)")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from .baseline import write_baseline

    path = write_baseline(Path(args.run_dir), Path(args.out))
    print(
        f"wrote {display_path(path)}; commit it, then gate runs with "
        f"`harness gate --baseline {args.out} RUN_DIR`"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_reports

    html, md = write_reports(Path(args.run_dir))
    print(f"wrote {display_path(html)} and {display_path(md)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .api import load_run

    run = load_run(Path(args.run_dir))
    out = Path(args.out or Path(args.run_dir) / f"{args.what}.{args.format}")
    path = run.export(out, args.format, args.what)
    rows = len(run.samples) if args.what == "samples" else len(run.summary_df())
    print(f"wrote {display_path(path)} ({rows} rows)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs
    from .tables import paired_table

    result = compare_runs(Path(args.run_a), Path(args.run_b), args.model_a, args.model_b)
    for note in result["notes"]:
        print(f"note: {note}")
    for (a, b), rows in result["pairs"].items():
        print(f"\n{a} ({args.run_a}) -> {b} ({args.run_b})")
        print(paired_table(rows))
        for p in rows:
            if p.only_a or p.only_b:
                print(
                    f"  {p.suite}: only in {args.run_a}: {', '.join(p.only_a) or '-'}; "
                    f"only in {args.run_b}: {', '.join(p.only_b) or '-'}"
                )
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .suites import available_suites, load_suite

    rows, problems = [], []
    for name, path in available_suites().items():
        try:
            s = load_suite(path)
        except InputError as exc:
            problems.append(str(exc))
            rows.append(
                [name, "-", "INVALID (harness validate " + str(display_path(path)) + ")", ""]
            )
            continue
        rows.append([name, len(s.questions), s.description, ", ".join(s.tags())])
    print(tabulate(rows, headers=["suite", "questions", "description", "tags"]))
    for p in problems:
        print(p, file=sys.stderr)
    return 2 if problems else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .suites import load_suite

    problems: list[Problem] = []
    for file in args.files:
        try:
            s = load_suite(Path(file))
            print(f"{file}: ok ({len(s.questions)} questions, hash {s.hash})")
        except InputError as exc:
            problems.extend(exc.problems or [Problem(file, str(exc))])
    if problems:
        raise InputError(problems=problems)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .models import load_registry
    from .paths import models_registries

    reg = load_registry()
    rows = [[s.name, s.source, s.location, s.dtype, s.description] for s in reg.values()]
    files = ", ".join(str(display_path(p)) for p in models_registries())
    print(f"registries (later ones win): {files or 'none'}")
    print(tabulate(rows, headers=["name", "source", "location", "dtype", "description"]))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .evaluation import rescore
    from .tables import summary_table

    summary = rescore(Path(args.run_dir), progress=not args.quiet)
    print(summary_table(summary))
    return 0


def cmd_build_base(args: argparse.Namespace) -> int:
    from .tiny import build

    info = build(
        Path(args.out), seed=args.seed, steps=args.steps, n_docs=args.docs, device=args.device
    )
    print(
        f"built {args.out}: {info['parameters']} parameters, final loss {info['final_loss']}, "
        f"{info['seconds']} s"
    )
    return 0


def _sft_overrides(args: argparse.Namespace) -> dict:
    from .sft.lora import LoraSettings

    return {
        "learning_rate": args.lr,
        "epochs": args.epochs,
        "batch_size": args.train_batch_size,
        "grad_accum": args.grad_accum,
        "max_length": args.max_length,
        "seed": args.seed,
        "lora": LoraSettings() if args.lora else None,
    }


def cmd_sft(args: argparse.Namespace) -> int:
    from .models import resolve_many
    from .sft.stage import run_sft
    from .suites import load_suites

    if not args.name.strip() or "/" in args.name or args.name.startswith("."):
        raise InputError(f"--name: '{args.name}' is not a usable model name (no slashes)")
    (spec,) = resolve_many(args.model)
    out = Path(args.out or Path("models") / args.name)
    info = run_sft(
        spec,
        args.data,
        out,
        suites=load_suites(args.suites),
        name=None if args.no_register else args.name,
        config=args.config,
        overrides=_sft_overrides(args),
        allow_overlap=args.allow_overlap,
        device=args.device,
        progress=not args.quiet,
        curve=_curve_plan(args, args.eval_suites),
    )
    if "rank" in info:
        return 0
    print(
        f"trained {args.name}: {info['steps']} steps, final loss {info['final_loss']}, "
        f"{info['seconds']} s -> {display_path(out)}/ (sft.json)"
    )
    if "curve" in info:
        c = info["curve"]
        print(
            f"curve: {len(c['points'])} points in {display_path(out / 'curve')}/ (report.html), "
            f"evaluation {c['eval_seconds']} s"
        )
    if "kept" in info:
        k = info["kept"]
        print(f"kept step {k['step']} ({k['why']}, {100 * k['accuracy']:.1f}%) in {out / 'best'}")
    if "registered" in info:
        print(f"registered in {info['registered']}; evaluate with --models {spec.name},{args.name}")
    return 0


def cmd_overlap(args: argparse.Namespace) -> int:
    from .sft.stage import check_overlap, describe_overlaps
    from .suites import load_suites

    overlaps = check_overlap(args.data, load_suites(",".join(args.suites)))
    if not overlaps:
        print(f"{args.data}: no overlap with {', '.join(args.suites)}")
        return 0
    print(f"{args.data}: {len(overlaps)} overlap(s) with the suites")
    print(describe_overlaps(overlaps))
    return 1


def cmd_data(args: argparse.Namespace) -> int:
    from .files import write_jsonl_atomic
    from .sft import generate
    from .suites import load_suites

    if args.kind == "arithmetic":
        prompts = [q.prompt for s in load_suites("all") for q in s.questions]
        rows = generate.arithmetic(args.n, args.seed, exclude=prompts)
    else:
        rows = generate.general()
    out = Path(args.out or f"data/sft/{args.kind}.jsonl")
    write_jsonl_atomic(out, rows)
    print(f"wrote {len(rows)} rows to {display_path(out)}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from .evaluation import DecodeSettings
    from .models import resolve_many
    from .pipeline import pipeline
    from .suites import load_suites

    (spec,) = resolve_many(args.base)
    out = Path(args.out or Path("reports/pipelines") / args.name)
    settings = DecodeSettings(batch_size=args.batch_size, device=args.device, limit=args.limit)
    result = pipeline(
        spec,
        args.data,
        load_suites(args.suite),
        out,
        name=args.name,
        settings=settings,
        sft_overrides=_sft_overrides(args),
        config=args.config,
        allow_overlap=args.allow_overlap,
        progress=not args.quiet,
        curve=_curve_plan(args, args.suite if (args.eval_every or args.eval_points) else None),
    )
    from .tables import paired_table, summary_table

    print()
    print(summary_table(result["summary"]))
    print()
    print(paired_table(result["comparison"]))
    print(f"\nwrote {display_path(out)}/ (run/ with report.html, model/, comparison.md)")
    return 0


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="chat or prompt/completion JSONL, or a datasets folder; comma-separate several",
    )
    p.add_argument("--config", type=Path, help="YAML file of training settings")
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        help="train even if the data contains suite questions",
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--train-batch-size", type=_positive, default=None)
    p.add_argument("--grad-accum", type=_positive, default=None)
    p.add_argument("--max-length", type=_positive, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--lora",
        action="store_true",
        help="train a LoRA adapter (peft) instead of every weight; the config's lora: sets it up",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--eval-every",
        type=_positive,
        default=None,
        metavar="N",
        help="evaluate the model being trained every N optimizer steps (and at step 0 and the end)",
    )
    p.add_argument(
        "--eval-points",
        type=_positive,
        default=None,
        metavar="K",
        help="evaluate at K evenly spaced steps, step 0 and the end included",
    )
    p.add_argument(
        "--keep",
        metavar="best:SUITE",
        help="also save the evaluated point with the best accuracy on SUITE (in OUT/best)",
    )


def _curve_plan(args: argparse.Namespace, suites: str | None) -> Any:
    """The evaluation-during-training plan the flags ask for, or None."""
    from .evaluation import DecodeSettings
    from .sft.curve import CurvePlan, parse_keep
    from .suites import load_suites

    if not (suites or args.eval_every or args.eval_points or args.keep):
        return None
    if not suites:
        raise InputError("name the suites to evaluate during training", argument="eval_suites")
    if args.eval_every and args.eval_points:
        raise InputError("give --eval-every or --eval-points, not both", argument="eval_every")
    points = args.eval_points or (None if args.eval_every else 5)
    return CurvePlan(
        tuple(load_suites(suites)),
        every=args.eval_every,
        points=points,
        keep=parse_keep(args.keep),
        decode=DecodeSettings(device=args.device),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Measure what supervised fine-tuning did to a model."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="evaluate models on suites (greedy, batched, resumable)")
    run.add_argument(
        "--suite",
        required=True,
        help="suite names, YAML paths, comma-separated lists of either, or 'all'",
    )
    run.add_argument(
        "--models",
        default="base",
        help="comma-separated names from models.yaml, folders or hub ids (default: base)",
    )
    run.add_argument("--out", type=Path, help="run folder (default: reports/runs/<timestamp>)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--batch-size", type=_batch_size, default=None, metavar="N|auto")
    run.add_argument(
        "--max-new-tokens", type=_positive, default=None, help="override every question's limit"
    )
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    run.add_argument("--dtype", choices=list(DTYPES), default="auto")
    run.add_argument(
        "--limit", type=_positive, default=None, help="only the first N questions of each suite"
    )
    run.add_argument(
        "--decoder",
        choices=list(DECODERS),
        default="auto",
        help="auto: batch-invariant kernels on a GPU (invariant), transformers' generate() on "
        "CPU (hf); static: the static KV cache + CUDA graph path, fast but batch-dependent",
    )
    run.add_argument(
        "--self-check",
        type=_count,
        default=DEFAULT_QUESTIONS,
        metavar="K",
        help=f"decode K sampled questions per model again one at a time and compare (default "
        f"{DEFAULT_QUESTIONS}; 0: off)",
    )
    run.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the checkpoint folder (off by default)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--gate",
        type=Path,
        metavar="BASELINE_DIR",
        help="after the run, gate it against this baseline (exit 1 on regression)",
    )
    run.add_argument("--rules", type=Path, help="gate rules YAML (with --gate)")
    run.add_argument("--junit", type=Path, help="write the gate's JUnit XML here (with --gate)")
    run.add_argument(
        "--strict-power",
        action="store_true",
        help="with --gate: fail where a suite is too small to detect its max_accuracy_drop",
    )
    run.set_defaults(func=cmd_run)

    suites = sub.add_parser("suites", help="list the suites with question counts")
    suites.set_defaults(func=cmd_suites)

    validate = sub.add_parser("validate", help="check suite files; exit 2 on any problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=cmd_validate)

    models = sub.add_parser("models", help="list the models in models.yaml")
    models.set_defaults(func=cmd_models)

    report = sub.add_parser("report", help="write report.html and report.md for a run folder")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(func=cmd_report)

    export = sub.add_parser("export", help="a run's samples or summary as csv, parquet or jsonl")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="csv")
    export.add_argument("--what", choices=["samples", "summary"], default="samples")
    export.add_argument("--out", help="output file (default: RUN_DIR/WHAT.FORMAT)")
    export.set_defaults(func=cmd_export)

    compare = sub.add_parser("compare", help="paired comparison of the same models in two runs")
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument("--model-a", help="model of RUN_A (default: every model in both runs)")
    compare.add_argument("--model-b", help="model of RUN_B (default: --model-a)")
    compare.set_defaults(func=cmd_compare)

    power = sub.add_parser(
        "power", help="how large a drop n questions detect, or how many questions a drop needs"
    )
    power.add_argument("--n", type=_positive, default=None, help="questions in the suite")
    power.add_argument(
        "--discordant",
        type=_fraction,
        default=0.2,
        help="expected share of questions whose verdict flips either way (default 0.2)",
    )
    power.add_argument("--alpha", type=_fraction, default=0.05, help="the gate's alpha")
    power.add_argument("--drop", type=_fraction, help="a drop to detect: answers with the n")
    power.set_defaults(func=cmd_power)

    base_cmd = sub.add_parser("baseline", help="write a baseline to commit, from a run folder")
    base_cmd.add_argument("run_dir", metavar="RUN_DIR")
    base_cmd.add_argument("--out", default="reports/baseline")
    base_cmd.set_defaults(func=cmd_baseline)

    gate_cmd = sub.add_parser("gate", help="exit 1 if a run regressed against a baseline")
    gate_cmd.add_argument("run_dir", metavar="RUN_DIR")
    gate_cmd.add_argument("--baseline", required=True, type=Path, metavar="DIR")
    gate_cmd.add_argument("--rules", type=Path, help="rules YAML (default rules otherwise)")
    gate_cmd.add_argument("--junit", type=Path, help="write JUnit XML here")
    gate_cmd.add_argument("--candidate", help="model of the run to gate")
    gate_cmd.add_argument("--baseline-model", help="model of the baseline to gate it against")
    gate_cmd.add_argument(
        "--strict-power",
        action="store_true",
        help="fail where a suite is too small to detect the rule's max_accuracy_drop",
    )
    gate_cmd.set_defaults(func=cmd_gate)

    score = sub.add_parser(
        "score", help="re-score a run folder without generating (judges read the answers again)"
    )
    score.add_argument("run_dir", metavar="RUN_DIR")
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    score.set_defaults(func=cmd_score)

    sft = sub.add_parser("sft", help="fine-tune a model with TRL (assistant-only loss)")
    sft.add_argument("--model", default="base", help="name from models.yaml, folder or hub id")
    sft.add_argument("--name", default="sft", help="registry name of the result (default: sft)")
    sft.add_argument("--no-register", action="store_true", help="do not add it to models.yaml")
    sft.add_argument("--out", help="output folder (default: models/NAME)")
    sft.add_argument("--suites", default="all", help="suites the contamination check compares with")
    sft.add_argument(
        "--eval-suites",
        help="suites to evaluate on during training (a curve in OUT/curve; 5 points by default)",
    )
    _add_training_flags(sft)
    sft.set_defaults(func=cmd_sft)

    pipe = sub.add_parser("pipeline", help="evaluate the base, fine-tune, evaluate again, compare")
    pipe.add_argument("--base", default="base")
    pipe.add_argument("--suite", default="all")
    pipe.add_argument("--name", default="pipeline-sft", help="name of the tuned model in the run")
    pipe.add_argument("--out", help="pipeline folder (default: reports/pipelines/NAME)")
    pipe.add_argument("--batch-size", type=_batch_size, default=None, metavar="N|auto")
    pipe.add_argument("--limit", type=_positive, default=None)
    _add_training_flags(pipe)
    pipe.set_defaults(func=cmd_pipeline)

    overlap = sub.add_parser("overlap", help="report training rows that contain suite questions")
    overlap.add_argument("data", metavar="DATA")
    overlap.add_argument("suites", nargs="+", metavar="SUITE")
    overlap.set_defaults(func=cmd_overlap)

    data = sub.add_parser("data", help="write the project's own training data")
    data.add_argument("kind", choices=["arithmetic", "general"])
    data.add_argument("--n", type=_positive, default=6000, help="rows (arithmetic)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--out", help="default: data/sft/KIND.jsonl")
    data.set_defaults(func=cmd_data)

    base = sub.add_parser(
        "build-base", help="rebuild the embedded base model (~9 min on 2 CPU cores)"
    )
    base.add_argument("--out", default="models/base")
    base.add_argument("--seed", type=int, default=0)
    base.add_argument("--steps", type=_positive, default=3000)
    base.add_argument("--docs", type=_positive, default=4000)
    base.add_argument("--device", default="cpu", help="cpu or cuda (training only)")
    base.set_defaults(func=cmd_build_base)
    return parser


# the library names the parameter at fault; the command line names its flag for it
FLAGS = {
    "suites": "--suite",
    "models": "--models",
    "data": "--data",
    "candidate": "--candidate",
    "baseline_model": "--baseline-model",
    "model_a": "--model-a",
    "format": "--format",
    "decoder": "--decoder",
    "device": "--device",
    "name": "--name",
    "eval_suites": "--eval-suites",
    "eval_every": "--eval-every",
    "eval_points": "--eval-points",
    "keep": "--keep",
    "what": "--what",
}


def _message(exc: HarnessError) -> str:
    if isinstance(exc, RunExists):
        return (
            f"error: {exc.folder} already holds a run; pass --resume to continue it, or choose "
            "another --out"
        )
    if isinstance(exc, Contaminated):
        return f"error: --data: {exc.summary}; remove them or pass --allow-overlap:\n{exc.listing}"
    if exc.problems:
        return str(exc)
    if exc.argument:
        return f"error: {FLAGS.get(exc.argument, exc.argument)}: {exc.message}"
    return f"error: {exc}"


def main(argv: list[str] | None = None) -> None:
    from .logs import show_on_stdout

    parser = build_parser()
    args = parser.parse_args(argv)
    show_on_stdout()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = args.func(args)
    except HarnessError as exc:
        if args.debug:
            raise
        print(_message(exc), file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
