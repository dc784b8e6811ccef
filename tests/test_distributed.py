"""Two processes (torchrun, gloo on CPU) give the single-process run, and resume per rank."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from harness.results import RunFolder

from .conftest import chat_rows, jsonl, run_args, run_cli, sft_args

SUITE = "defaults: {max_new_tokens: 6, scorer: numeric}\nquestions:\n" + "".join(
    f"  - {{id: q{i:02d}, prompt: 'What is {i} + {i % 5}? {'Think. ' * (i % 4)}', "
    f"answer: {i + i % 5}}}\n"
    for i in range(17)
)


def outputs(folder):
    return sorted(
        (r["model"], r["suite"], r["id"], r["output"], r["finish_reason"])
        for r in RunFolder(folder).read_samples()
    )


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`harness ARGS` in two processes (gloo on CPU); fails the test on a non-zero exit."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "harness",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_ranks_equal_one_process_and_resume_per_rank(
    write, random_model_dir, chat_model_dir, tmp_path
):
    suite = write("s.yaml", SUITE)
    common = [
        "--suite",
        str(suite),
        "--models",
        f"{random_model_dir},{chat_model_dir}",
        "--quiet",
        "--batch-size",
        "3",
    ]
    single = tmp_path / "single"
    assert run_cli("run", *common, "--out", str(single)) == 0
    multi = tmp_path / "multi"
    log = torchrun("run", *common, "--out", str(multi)).stdout
    assert outputs(multi) == outputs(single)
    # each rank reports its own share (batches of 3 dealt round-robin), not the whole suite
    shares = [int(n) for n in re.findall(r"\(rank \d\): (\d+) samples", log)]
    assert len(shares) == 4 and sum(shares) == len(outputs(single)) and max(shares) < 17
    assert not list(multi.glob("samples.rank*"))  # merged into samples.jsonl
    run = json.loads((multi / "run.json").read_text())
    assert run["status"] == "complete" and {"event": "ranks", "ranks": 2} in [
        {k: v for k, v in e.items() if k != "time"} for e in run["events"]
    ]
    # the self-check's one seeded sample, each rank re-decoding its share, merged on rank 0
    checks = [m["self_check"] for m in run["models"].values()]
    assert [(c["questions"], c["identical"]) for c in checks] == [(8, 8), (8, 8)]
    assert log.count("self-check: 8/8 identical") == 4  # both models, printed by both ranks

    # a killed two-rank run: each rank's shard holds part of its share, one torn mid-line
    part = tmp_path / "part"
    part.mkdir()
    run["status"] = "running"
    (part / "run.json").write_text(json.dumps(run))
    lines = (multi / "samples.jsonl").read_text().splitlines(keepends=True)
    (part / "samples.rank0.jsonl").write_text("".join(lines[:5]) + lines[5][:40])
    (part / "samples.rank1.jsonl").write_text("".join(lines[20:24]))
    torchrun("run", *common, "--out", str(part), "--resume")
    assert outputs(part) == outputs(single)
    assert len(RunFolder(part).read_samples()) == 34 and not list(part.glob("samples.rank*"))


def test_two_process_sft_trains_with_the_same_effective_batch(write, random_model_dir, tmp_path):
    data = write("d.jsonl", jsonl(chat_rows(64)))
    config = write("c.yaml", "epochs: 2\nbatch_size: 8\ngrad_accum: 2\nlogging_steps: 2\n")
    out = tmp_path / "tuned"
    result = torchrun(*sft_args(random_model_dir, data, out, config=config))
    assert "accumulation 2 per process becomes batch 8 x accumulation 1" in result.stdout
    info = json.loads((out / "sft.json").read_text())
    # 64 rows / (8 per process x 2 processes x 1) = 4 optimizer steps an epoch, as with one
    # process at 8 x 2
    assert info["processes"] == 2 and info["steps"] == 8
    assert info["settings"]["grad_accum"] == 1 and info["final_loss"] is not None


def test_two_process_sft_evaluates_its_curve_together(write, random_model_dir, tmp_path):
    """Every rank evaluates at the same steps, each its share of the batches; rank 0 merges."""
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suite = write(
        "s.yaml",
        "defaults: {max_new_tokens: 6, scorer: numeric}\nquestions:\n"
        + "".join(
            f"  - {{id: q{i}, prompt: 'What is {i} + 100?', answer: {i + 100}}}\n"
            for i in range(17)
        ),
    )
    config = write("c.yaml", "epochs: 1\nbatch_size: 4\nlogging_steps: 2\n")
    out = tmp_path / "tuned"
    args = ["--eval-suites", str(suite), "--eval-points", "3"]
    torchrun(*sft_args(random_model_dir, data, out, config=config), *args)
    info = json.loads((out / "sft.json").read_text())
    assert info["curve"]["points"] == [0, 8, 16]  # the one-process batch of 4: 16 steps
    samples = RunFolder(out / "curve").read_samples()
    assert len(samples) == 3 * 17 and not list((out / "curve").glob("samples.rank*"))
    run = json.loads((out / "curve" / "run.json").read_text())
    assert run["models"][f"{out.name}@step-16"]["self_check"]["questions"] == 8


def test_two_process_sync_free_sft_logs_what_trls_head_does(write, random_model_dir, tmp_path):
    """The sync-free head gathers its metrics and token counts across ranks as TRL's does."""
    data = write("d.jsonl", jsonl(chat_rows(96)))
    infos = []
    for sync_free in ("false", "true"):
        config = write(
            f"c-{sync_free}.yaml",
            "packing: true\nattention: harness_varlen\nmax_length: 256\nbatch_size: 2\n"
            f"grad_accum: 2\nepochs: 1\nlogging_steps: 1\nsync_free: {sync_free}\n",
        )
        out = tmp_path / f"tuned-{sync_free}"
        torchrun(*sft_args(random_model_dir, data, out, config=config))
        infos.append(json.loads((out / "sft.json").read_text()))
    trl, fast = infos
    assert fast["processes"] == 2 and fast["settings"]["sync_free"]
    assert fast["tokens"] == trl["tokens"] > 0  # both ranks' tokens, summed
    assert len(fast["loss_curve"]) == len(trl["loss_curve"]) >= 3
    for a, b in zip(fast["loss_curve"], trl["loss_curve"], strict=True):
        assert a["step"] == b["step"] and abs(a["loss"] - b["loss"]) < 2e-3
        # accuracy over both ranks' labels: one rank's alone differs by much more
        assert abs(a["token_accuracy"] - b["token_accuracy"]) < 2e-3


def test_one_process_on_several_gpus_is_refused_before_any_work(
    write, random_model_dir, tmp_path, monkeypatch, capsys
):
    """TRL's trainer refuses one process over several GPUs only after the data is tokenized (and
    `pipeline` would have evaluated the base first): harness says so up front, with the ways out,
    and neither trains nor evaluates."""
    import torch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    data = write("d.jsonl", jsonl(chat_rows(8)))
    out = tmp_path / "tuned"
    assert run_cli(*sft_args(random_model_dir, data, out)) == 2
    err = capsys.readouterr().err
    assert "2 GPUs are visible to this one process" in err
    assert "torchrun --nproc_per_node 2" in err and "CUDA_VISIBLE_DEVICES=0" in err
    assert not out.exists()
    pipe = tmp_path / "pipe"
    args = ["pipeline", "--base", str(random_model_dir), "--data", str(data), "--out", str(pipe)]
    assert run_cli(*args, "--name", "p", "--quiet") == 2
    err = capsys.readouterr().err
    assert "-m harness pipeline ..." in err and not (pipe / "run").exists()
    # under torchrun (one process or more), or on the CPU, the same machine trains
    from harness.sft.planning import check_one_gpu_per_process

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_one_gpu_per_process("cuda")
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_one_gpu_per_process("cuda")
    monkeypatch.delenv("WORLD_SIZE")
    check_one_gpu_per_process("cpu")


def test_two_process_lora_trains_an_adapter_and_its_curve(write, chat_model_dir, tmp_path):
    """LoRA under torchrun: the adapter rank 0 saves decodes as the curve's last point did."""
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suite = write(
        "s.yaml",
        "defaults: {max_new_tokens: 6, scorer: numeric}\nquestions:\n"
        + "".join(
            f"  - {{id: q{i}, prompt: 'What is {i} + 100?', answer: {i + 100}}}\n" for i in range(9)
        ),
    )
    config = write("c.yaml", "epochs: 1\nbatch_size: 8\nlearning_rate: 2.0e-2\nlora: {r: 4}\n")
    out = tmp_path / "tuned"
    args = ["--eval-suites", str(suite), "--eval-points", "2"]
    torchrun(*sft_args(chat_model_dir, data, out, config=config), *args)
    info = json.loads((out / "sft.json").read_text())
    assert info["processes"] == 2 and info["adapter"] is True
    assert (out / "adapter_model.safetensors").is_file() and not (out / "config.json").exists()
    assert run_cli(*run_args(suite, out, tmp_path / "run")) == 0
    last = f"{out.name}@step-{info['steps']}"
    curve = {
        r["id"]: r["output"] for r in RunFolder(out / "curve").read_samples() if r["model"] == last
    }
    run = {r["id"]: r["output"] for r in RunFolder(tmp_path / "run").read_samples()}
    assert curve == run
