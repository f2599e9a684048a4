"""Training checkpoints of every trainer (both DeScore stages and the two Wan trainers): written
atomically, resumed exactly.

`OUTPUT/checkpoint-{step}/` holds `trainable.safetensors` (only the parameters that train: LoRA,
head, `<reward>` embedding, or everything in a full fine-tune), `optimizer.pt` (keyed by parameter
name), `scheduler.pt` (when the trainer has a schedule), the RNG states, and `trainer_state.json` (the
state so far, `run.py`). Sharded parameters and optimizer state are gathered whole, so the files are the
same whatever the sharding and a run resumes on any number of processes. Every process calls
`save_checkpoint` and `load_checkpoint` (gathering is collective); the main process writes. A checkpoint
exists only once complete (written in a staging folder, then renamed), so the newest one is always safe
to resume.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_directory
from ..errors import DeScoreInputError
from .sharding import copy_full_into, full_tensor, load_optimizer_state, optimizer_state

STATE_NAME = "trainer_state.json"


def trainable_state(model: torch.nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """The trainable parameters by name, whole on the CPU. Sharded ones are gathered, so every process must
    call this; one that does not write (`keep` False) takes part in the gathering and keeps nothing."""
    state = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            whole = full_tensor(parameter)
            if keep:
                state[name] = whole.detach().cpu().contiguous()
    return state


def save_checkpoint(
    output_dir: Path, model, optimizer, state: dict, scheduler=None, keep: int = 2, accelerator=None
) -> Path:
    """Write `checkpoint-{state['step']}` atomically and keep only the newest `keep` checkpoints. With
    several processes every one calls this; the main process writes."""
    path = Path(output_dir) / f"checkpoint-{state['step']}"
    writes = accelerator is None or accelerator.is_main_process
    weights = trainable_state(model, keep=writes)
    optimizer_whole = optimizer_state(model, optimizer)
    if not writes:
        accelerator.wait_for_everyone()
        return path
    with atomic_directory(path, marker=STATE_NAME) as staging:
        save_file(weights, staging / "trainable.safetensors")
        torch.save(optimizer_whole, staging / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, staging / "rng.pt")
        (staging / STATE_NAME).write_text(json.dumps(state, indent=2))
    for old in checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return path


def checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints under `output_dir`, oldest first."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.name) or 0))


def load_checkpoint(path: Path, model, optimizer, scheduler=None) -> dict:
    """Restore weights, optimizer, scheduler and RNG states from `path` (into this process's shards of
    sharded ones); returns its trainer state."""
    weights = load_file(path / "trainable.safetensors")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n in trainable if n not in weights]
    if missing:
        raise DeScoreInputError(f"{path}: checkpoint lacks trainable parameters {missing[:5]}; was the config changed?")
    unknown = sorted(set(weights) - set(trainable))
    if unknown:
        raise DeScoreInputError(
            f"{path}: checkpoint holds parameters the model does not train {unknown[:5]}; was the config changed?"
        )
    parameters = dict(model.named_parameters())
    for name in trainable:
        copy_full_into(parameters[name], weights[name])
    saved = torch.load(path / "optimizer.pt", weights_only=True)
    if all(isinstance(p, int) for group in saved["param_groups"] for p in group["params"]):
        optimizer.load_state_dict(saved)  # keyed by position: written before checkpoints were by name
    else:
        load_optimizer_state(model, optimizer, saved)
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=False)
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / STATE_NAME).read_text())


def resume(output_dir: Path, model, optimizer, scheduler=None) -> dict | None:
    """Restore the newest checkpoint under `output_dir` (see `load_checkpoint`) and return its trainer
    state; None when there is none."""
    found = checkpoints(output_dir)
    return load_checkpoint(found[-1], model, optimizer, scheduler) if found else None
