"""What every trainer of this library does the same way: cold start, stage-2 RL, Flow-DPO and Wan GRPO.

A trainer's output folder::

    OUTPUT/checkpoint-{step}/    resumable state (`checkpoint.py`); the newest `keep_checkpoints` are kept
    OUTPUT/final/                the trained result: a DeScore checkpoint, or a Wan LoRA
    OUTPUT/trainer_state.json    {"step", "history": [one row of metrics per step], "evaluations": [...]}
    OUTPUT/training_curves.png   every series of the history and the evaluations, one panel each
    OUTPUT/<tracker>/            accelerate's tracker logs (`report_to`): `train/<metric>`, `eval/<metric>`
    OUTPUT/rollout_engine/       stage 2 with vLLM rollouts, while it runs: the export its engine starts from

Seeds: `seed` once before the model is built, so every process starts from the same weights; each draw
of step `s` on process `p` (data, masks, noise, dropout, sampling) comes from `step_seed(seed, s, p)`,
so a resumed run draws what the uninterrupted one would. Data come in shuffled epochs shared out over
processes (`distributed.epoch_batch`). A step's metrics are averaged over processes before they are
logged or kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..plots import plot_curves
from .checkpoint import STATE_NAME, resume, save_checkpoint
from .config import TrainerConfig
from .distributed import finish_trackers, optimizer_step, step_seed, trainer_accelerator
from .sharding import (
    DATA_PARALLEL,
    ZERO3,
    outside_state_dict,
    shard,
    whole_parameters,
    whole_state_dict,
    zero3_backward,
    zero3_engine,
)

RESULT_DIR = "final"
CURVES_NAME = "training_curves.png"


class TrainingRun:
    """One run of a trainer: its accelerator, state, progress bar, and the work at the end of each step
    and of the run. The loop itself stays in the trainer."""

    def __init__(self, config: TrainerConfig, name: str, total_steps: int):
        """Set up accelerate (devices, precision, trackers; the output folder is claimed) and seed every
        generator with `config.seed`. `name`: the tracker project and the progress bar's label."""
        from accelerate.utils import set_seed

        self.config, self.name, self.total_steps = config, name, total_steps
        self.output_dir = Path(config.output_dir)
        self.accelerator, self.sharding = trainer_accelerator(self.output_dir, config.mixed_precision, config.report_to)
        self.trained = None  # the sharded module whose result `finish` gathers
        self.engine = None  # under ZeRO-3: the DeepSpeed engine of the trained module (`resume` starts it)
        self.references = []  # under ZeRO-3: the engines of frozen modules (references), kept with the run
        self.state = {"step": 0, "history": [], "evaluations": []}
        self.progress = None
        set_seed(config.seed)

    def shard(self, module, trained: bool = True):
        """`module` sharded over the processes when the run is sharded (`sharding.py`), before its optimizer
        is built (under ZeRO-3 a trained module is partitioned when `resume` gets its optimizer); `trained`:
        its result is written at the end (not a frozen reference). Returns `module`."""
        shard(module, self.sharding)
        if self.sharding == ZERO3 and not trained:
            self.references.append(zero3_engine(module))
        if self.sharding != DATA_PARALLEL and trained:
            self.trained = module
        return module

    def autocast(self):
        """The context of the forwards: accelerate's autocast at the run's mixed precision (under ZeRO-3,
        where accelerate leaves precision to DeepSpeed, torch's own, over the same float32 weights)."""
        if self.sharding == ZERO3 and self.config.mixed_precision == "bf16":
            return torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16)
        return self.accelerator.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        """`loss.backward()`, gradients added to those of the step's earlier backward passes."""
        if self.engine is not None:
            zero3_backward(self.engine, loss)
        else:
            loss.backward()

    def optimizer_step(self, optimizer) -> None:
        """One optimizer step over the gradients of the backward passes since the last: averaged over the
        processes, clipped to `max_grad_norm`, applied, cleared (by the ZeRO-3 engine when there is one)."""
        if self.engine is not None:
            self.engine.step()
        else:
            optimizer_step(self.accelerator, optimizer, self.config.max_grad_norm)

    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return self.state["step"]

    @property
    def finished(self) -> bool:
        return self.state["step"] >= self.total_steps

    def resume(self, model, optimizer, scheduler=None, **position) -> dict:
        """Restore the newest checkpoint in the output folder, if any, into `model`, `optimizer` and
        `scheduler` (else start from `position`: a trainer's own place in its data, say), then start the
        trackers and the progress bar. Under ZeRO-3, `model` and `optimizer` go to DeepSpeed's engine first,
        which partitions them. Returns the state."""
        if self.sharding == ZERO3:
            self.engine = zero3_engine(model, optimizer, self.config.max_grad_norm)
        self.state.update(position)
        self._checkpointed = (model, optimizer, scheduler)  # what each checkpoint holds
        resumed = resume(self.output_dir, model, optimizer, scheduler)
        if resumed is not None:
            self.state = resumed
        if self.finished:
            self.accelerator.print(f"nothing to do: {self.output_dir} holds a finished run of {self.step} steps")
        elif self.step:
            self.accelerator.print(f"resuming from step {self.step}")
        if self.accelerator.is_main_process and self.config.report_to:
            values = {key: str(value) for key, value in dataclasses.asdict(self.config).items()}
            self.accelerator.init_trackers(self.name.replace(" ", "-"), values)
        self.progress = tqdm(
            total=self.total_steps, initial=self.step, desc=self.name, disable=not self.accelerator.is_main_process
        )
        return self.state

    def step_seed(self, stream: int = 0) -> int:
        """The seed of this process's draws at the current step (`stream` tells independent draws apart)."""
        return step_seed(self.config.seed, self.step, self.accelerator.process_index, stream)

    def seed_step(self) -> torch.Generator:
        """Seed the global generators for this step's draws (dropout, sampling) and return a private
        generator for the trainer's own (data, noise)."""
        torch.manual_seed(self.step_seed())
        return torch.Generator().manual_seed(self.step_seed(stream=1))

    def end_step(
        self, metrics: dict[str, float], evaluate: Callable[[], dict] | None = None, stop_after: int | None = None
    ) -> bool:
        """Count one optimizer step: `metrics` averaged over processes into the history and logged as
        `train/<name>` every `log_every` steps, `evaluate()` (main process)
        every `eval_every` steps and at the end, a checkpoint every `save_every` steps, at the end and
        at `stop_after`. True when the loop should stop."""
        self.state["step"] += 1
        row = {"step": self.step, **average_over_processes(self.accelerator, metrics)}
        self.state["history"].append(row)
        if self.step % self.config.log_every == 0:
            logged = {f"train/{k}": v for k, v in row.items() if k != "step" and math.isfinite(v)}
            self.accelerator.log(logged, step=self.step)
        if evaluate is not None and (self.step % self.config.eval_every == 0 or self.finished):
            self.evaluate(evaluate)
        self.progress.update(1)
        stop = self.finished or self.step == stop_after
        if self.step % self.config.save_every == 0 or stop:  # every process: sharded state is gathered
            model, optimizer, scheduler = self._checkpointed
            keep = self.config.keep_checkpoints
            save_checkpoint(self.output_dir, model, optimizer, self.state, scheduler, keep, self.accelerator)
        return stop

    def evaluate(self, evaluate: Callable[[], dict]) -> None:
        """`evaluate()`'s metrics at the current step, on the main process (on every process when the model
        is sharded: its forwards are collective): kept and logged as `eval/<name>`."""
        if self.sharding == DATA_PARALLEL and not self.accelerator.is_main_process:
            return
        row = {"step": self.step, **evaluate()}
        if not self.accelerator.is_main_process:
            return
        self.state["evaluations"].append(row)
        self.accelerator.log({f"eval/{k}": v for k, v in row.items() if k != "step"}, step=self.step)

    def finish(self, save_result: Callable[[Path, dict | None], None]) -> dict:
        """End the run. When it is finished, the main process writes the result to `OUTPUT/final` with
        `save_result(path, state)` (atomically; `state` is the sharded model's gathered state dict, None
        when it is not sharded), `trainer_state.json` and the curves; trackers close either way. Returns
        the state."""
        if self.progress is not None:
            self.progress.close()
        if self.finished:
            state = whole_state_dict(self.trained) if self.trained is not None else None  # every process
            with whole_parameters(outside_state_dict(self.trained)):  # head and <reward>, where ZeRO-3 partitions
                if self.accelerator.is_main_process:
                    save_result(self.output_dir / RESULT_DIR, state)
            if self.accelerator.is_main_process:
                atomic_write_text(self.output_dir / STATE_NAME, json.dumps(self.state, indent=2))
                plot_curves(self.curves(), self.output_dir / CURVES_NAME, self.name)
            self.accelerator.wait_for_everyone()
        finish_trackers(self.accelerator)
        return self.state

    def record(self, data, pairs: int) -> dict:
        """This run as one entry of a DeScore checkpoint's `training` (its model card): the stage, its data
        and their size, the steps done, and the last held-out evaluation."""
        evaluation = self.state["evaluations"][-1] if self.state["evaluations"] else None
        return {"stage": self.name, "data": str(data), "pairs": pairs, "steps": self.step, "evaluation": evaluation}

    def curves(self) -> dict[str, tuple[list, list]]:
        """Every metric of the history and the evaluations as `(steps, values)`."""
        curves = {}
        for prefix, rows in (("", self.state["history"]), ("eval ", self.state["evaluations"])):
            names = dict.fromkeys(name for row in rows for name in row if name != "step")
            for name in names:
                curves[prefix + name] = ([row["step"] for row in rows], [row.get(name, math.nan) for row in rows])
        return curves


def average_over_processes(accelerator, metrics: dict[str, float]) -> dict[str, float]:
    """Each metric's mean over processes, NaNs left out (NaN where every process has one); floats."""
    values = torch.tensor([float(v) for v in metrics.values()], dtype=torch.float64)
    if accelerator.num_processes > 1:
        finite = torch.isfinite(values)
        sums = torch.stack([torch.where(finite, values, 0.0), finite.double()]).to(accelerator.device)
        total, count = accelerator.reduce(sums, reduction="sum").cpu()
        values = torch.where(count > 0, total / count.clamp(min=1), math.nan)
    return dict(zip(metrics, values.tolist()))
