"""Evaluation during fine-tuning: accuracy, repetition and stopping as curves over the steps.

A Trainer callback decodes the evaluation suites with the model in memory (no save, no reload)
at step 0, at the chosen steps and at the end, through the same runner, scorers and decoders as
`harness run`. The result is a run folder (`models/NAME/curve/`) whose models are the points,
`NAME@step-S`, so report, compare and gate read it unchanged; run.json records each point's step,
epoch, learning rate and loss, and the training loss curve. Training is not touched: the model
goes back to train mode with its attention implementation and generation config, and every
random number generator is put back as it was, so the loss curve is the one without evaluation.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..adapters import merged
from ..errors import InputError
from ..evaluation import DecodeSettings, evaluate
from ..files import replace_folder, settle_folder, write_json_atomic
from ..logs import say
from ..models import LoadedModel, from_memory
from ..results import RunFolder, read_json
from ..suites import Suite

POINT = "@step-"
KEPT = "kept.json"  # in the best point's folder: which step, on what, scoring what


@dataclass(frozen=True)
class CurvePlan:
    """Where to evaluate: every `every` optimizer steps, or `points` evenly spaced points (both
    counting step 0 and the last step); `keep` names a suite whose best point is saved too."""

    suites: tuple[Suite, ...]
    every: int | None = None
    points: int | None = None
    keep: str | None = None
    decode: DecodeSettings = DecodeSettings()

    def __post_init__(self) -> None:
        if not self.suites:
            raise InputError("give at least one suite to evaluate on", argument="eval_suites")
        if (self.every is None) == (self.points is None):
            raise InputError("give either every (steps) or points", argument="eval_every")
        if self.every is not None and self.every < 1:
            raise InputError(f"expected 1 or more steps, got {self.every}", argument="eval_every")
        if self.points is not None and self.points < 2:
            raise InputError(
                f"expected 2 or more points (step 0 and the end), got {self.points}",
                argument="eval_points",
            )
        if self.keep is not None and self.keep not in {s.name for s in self.suites}:
            raise InputError(
                f"best:{self.keep}: '{self.keep}' is not one of the evaluation suites "
                f"({', '.join(s.name for s in self.suites)})",
                argument="keep",
            )

    def steps(self, last: int) -> list[int]:
        """The optimizer steps to evaluate at, for a run of `last` steps."""
        if self.every is not None:
            chosen = set(range(0, last + 1, self.every))
        else:
            n = self.points or 2
            chosen = {round(i * last / (n - 1)) for i in range(n)}
        return sorted(chosen | {0, last})


def parse_keep(value: str | None) -> str | None:
    """`best:SUITE` -> SUITE."""
    if value is None:
        return None
    kind, _, suite = value.partition(":")
    if kind != "best" or not suite:
        raise InputError(f"expected best:SUITE, got '{value}'", argument="keep")
    return suite


def point_name(name: str, step: int) -> str:
    return f"{name}{POINT}{step}"


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Every generator the training reads from, put back after the evaluation."""
    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _reads_weights_only(model: Any) -> bool:
    """The invariant decoder (CUDA, a supported architecture) never calls the model's modules;
    the others do, with whatever attention training set."""
    from ..invariant import Unsupported, layout_of

    if next(model.parameters()).device.type != "cuda":
        return False
    try:
        layout_of(model)
    except Unsupported:
        return False
    return True


@contextmanager
def _attention(model: Any, implementation: str | None) -> Iterator[None]:
    """The model's own attention while decoding (training may use a packed-rows kernel); left
    alone where the decoder reads only weights, so compiled layers keep their graphs."""
    current = getattr(model.config, "_attn_implementation", None)
    swap = implementation and current != implementation and not _reads_weights_only(model)
    if swap:
        model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        if swap:
            model.set_attn_implementation(current)


class CurveCallback(TrainerCallback):
    """Evaluates the model being trained at the plan's steps into `folder`."""

    def __init__(
        self,
        plan: CurvePlan,
        base: LoadedModel,
        name: str,
        folder: Path,
        identity: str,
        best_dir: Path | None,
        attention: str | None,
        log: Callable[[str], None] = say,
    ):
        self.plan, self.base, self.name, self.folder = plan, base, name, folder
        self.identity, self.best_dir, self.attention, self.log = identity, best_dir, attention, log
        # decoded as `harness run` would decode the saved model: bf16 on a GPU, float32 on CPU
        self.dtype = "bfloat16" if base.device.startswith("cuda") else "float32"
        if plan.decode.dtype != "auto":
            self.dtype = plan.decode.dtype
        self.steps: list[int] = []
        self.done: set[int] = set()
        self.best: dict[str, Any] | None = None
        self.trainer: Any = None  # set by `attach`: metrics go to the trainer's loggers
        self.seconds = 0.0
        self.point_seconds: dict[int, float] = {}

    # ------------------------------------------------------------------ the Trainer's hooks

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        self.steps = self.plan.steps(state.max_steps)
        self._recall(state.global_step)
        names = ", ".join(s.name for s in self.plan.suites)
        at = ", ".join(map(str, self.steps))
        self.log(f"evaluating {names} at steps {at} into {self.folder}")
        if state.global_step in self.steps:
            self._point(args, state, model, kw.get("lr_scheduler"))

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        if state.global_step in self.steps and state.global_step < state.max_steps:
            self._point(args, state, model, kw.get("lr_scheduler"))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        self._point(args, state, model, kw.get("lr_scheduler"), final=True)

    # ------------------------------------------------------------------ one point

    def _point(
        self, args: Any, state: Any, model: Any, scheduler: Any, final: bool = False
    ) -> None:
        import time

        step = state.global_step
        if step in self.done:
            return
        self.done.add(step)
        start = time.perf_counter()
        net = getattr(model, "module", model)  # under DistributedDataParallel
        # a LoRA run decodes its adapter merged into the base, as `harness run` decodes it
        adapter = net if hasattr(net, "get_base_model") else None
        decoded = adapter.get_base_model() if adapter is not None else net
        name = point_name(self.name, step)
        training = self._training_info(state, scheduler)
        fingerprint = self._fingerprint(step)
        # the self-check re-decodes alone: once, at the end, is enough to catch a batch effect
        decode = self.plan.decode if final else replace(self.plan.decode, self_check=0)
        with (
            _random_state_kept(),
            _attention(decoded, self.attention),
            merged(adapter, adapter.active_adapter) if adapter is not None else nullcontext(),
        ):
            lm = from_memory(
                decoded,
                self.base.tokenizer,
                name,
                self.base.spec.chat_template,
                fingerprint=fingerprint,
                info={"training": training},
                dtype=self.dtype,
            )
            summary = evaluate(
                list(self.plan.suites),
                [lm],
                self.folder,
                decode,
                resume=True,
                log=self.log,
                progress=False,
            )
        self.point_seconds[step] = round(time.perf_counter() - start, 2)
        self.seconds += self.point_seconds[step]
        if summary is None:  # not rank 0: rank 0 logs and keeps
            return
        scores = summary["models"].get(name, {})
        metrics = {
            f"eval/{suite}/{key}": entry[key]
            for suite, entry in scores.items()
            for key in ("accuracy", "repetition_rate", "no_stop_rate")
        }
        self.log(
            f"step {step}: "
            + ", ".join(f"{s} {100 * e['accuracy']:.1f}%" for s, e in scores.items())
        )
        if self.trainer is not None and metrics:  # not Trainer.log: TRL's would flush its own
            state.log_history.append({**metrics, "step": step})
            # on a copy of the control: the handler's on_log clears should_log, which would
            # drop the training's own log of this step
            control = copy.copy(self.trainer.control)
            self.trainer.callback_handler.on_log(args, state, control, metrics)
        if self.plan.keep and self.best_dir is not None:
            self._keep_best(net, step, scores.get(self.plan.keep, {}).get("accuracy"))
        self._record_losses(state)
        if final:  # once: `harness report` renders a curve that stopped early
            from ..report import write_reports

            write_reports(self.folder)

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer
        trainer.add_callback(self)

    def _training_info(self, state: Any, scheduler: Any) -> dict[str, Any]:
        logged = [h for h in state.log_history if h.get("step", 0) <= state.global_step]
        loss = next((h["loss"] for h in reversed(logged) if "loss" in h), None)
        tokens = next((h["num_tokens"] for h in reversed(logged) if "num_tokens" in h), 0)
        lr = scheduler.get_last_lr()[0] if scheduler is not None else None
        return {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "learning_rate": lr,
            "loss": loss,
            "tokens_logged": int(tokens),
            "run": self.name,
        }

    def _fingerprint(self, step: int) -> str:
        """A point's model: this training (model, data, settings) at this step."""
        return "sha256:" + hashlib.sha256(f"{self.identity}:{step}".encode()).hexdigest()

    def _recall(self, step: int) -> None:
        """A training resumed at `step` takes over the points evaluated before it and the best
        kept among them, so that its record and its kept model are those of a run never killed
        (Trainer saves a step's checkpoint after that step's callbacks: what came before a
        checkpoint is complete)."""
        if RunFolder(self.folder).run_json.exists():
            models = RunFolder(self.folder).read_run().get("models", {})
            for earlier in self.steps:
                entry = models.get(point_name(self.name, earlier), {})
                if earlier < step and entry.get("fingerprint") == self._fingerprint(earlier):
                    self.done.add(earlier)
        if self.best_dir is None or not self.plan.keep:
            return
        settle_folder(self.best_dir)
        kept = self.best_dir / KEPT
        best = read_json(kept) if kept.is_file() else None
        if best and best.get("fingerprint") == self._fingerprint(best.get("step", -1)):
            self.best = best  # a step after `step` too: its point reads the same again

    def _keep_best(self, net: Any, step: int, accuracy: float | None) -> None:
        if accuracy is None or (self.best is not None and accuracy <= self.best["accuracy"]):
            return
        best = {"suite": self.plan.keep, "step": step, "accuracy": accuracy}
        best |= {"folder": str(self.best_dir), "fingerprint": self._fingerprint(step)}

        def fill(folder: Path) -> None:
            net.save_pretrained(folder)
            self.base.tokenizer.save_pretrained(folder)
            write_json_atomic(folder / KEPT, best)

        replace_folder(self.best_dir, fill)  # a kill while saving keeps the previous best whole
        self.best = best
        self.log(f"kept step {step} as the best on {self.plan.keep} ({100 * accuracy:.1f}%)")

    def _record_losses(self, state: Any) -> None:
        """The training loss so far into the curve's run.json (the report's second panel)."""
        folder = RunFolder(self.folder)
        run = folder.read_run()
        run["training"] = {
            "run": self.name,
            "loss_curve": [
                {"step": h["step"], "loss": round(h["loss"], 4)}
                for h in state.log_history
                if "loss" in h
            ],
        }
        folder.write_run(run)
