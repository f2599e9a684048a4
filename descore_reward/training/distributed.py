"""What the trainers share across processes under `accelerate launch`: per-process seeds, and gradients
averaged in one all-reduce (the trainers keep their models unwrapped, so adapters can be switched off
for reference passes and a step may run several forwards before its backward)."""

from __future__ import annotations

import numpy as np
import torch


def step_seed(seed: int, step: int, process_index: int) -> int:
    """A seed for one process's draws at one step: independent across processes, the same on resume."""
    return int(np.random.SeedSequence([seed, step, process_index]).generate_state(1)[0])


def average_gradients(accelerator, parameters) -> None:
    """Replace each gradient by its mean over processes (a no-op for one process). Every process must
    hold gradients for the same parameters, as it does when all run the same graph."""
    if accelerator is None or accelerator.num_processes == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = accelerator.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")
    for grad, chunk in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(chunk.view_as(grad))


def finish_trackers(accelerator) -> None:
    """Close the experiment trackers. Unlike `accelerator.end_training()` this leaves the process group
    up, so the caller's script can go on (evaluate, or train another stage) after a trainer returns."""
    for tracker in accelerator.trackers:
        tracker.finish()
