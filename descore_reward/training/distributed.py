"""How every trainer runs on several processes (`accelerate launch`). Each process draws its own share
of each epoch with its own seeds; the model is held whole on every process (data parallel) or sharded
over them (FSDP2, ZeRO-3: `sharding.py`) and always called as itself, never through a wrapper, so adapters
can be switched off for reference passes and a step may run several forwards before its backward.
Gradients of whole parameters are averaged across processes before each optimizer step (FSDP averages
its shards' itself; under ZeRO-3 DeepSpeed's engine reduces every gradient and steps).
"""

from __future__ import annotations

import numpy as np
import torch

from ..atomic import claim_folder, release_folder
from .sharding import clip_gradients, is_sharded


def step_seed(seed: int, step: int, process_index: int, stream: int = 0) -> int:
    """A seed for one process's draws at one step: independent across processes and `stream`s, the same
    on resume."""
    return int(np.random.SeedSequence([seed, step, process_index, stream]).generate_state(1)[0])


def shard_size(count: int, processes: int) -> int:
    """How many of `count` items each process takes per epoch: an equal share, at least one."""
    return max(1, count // processes)


def epoch_shard(count: int, epoch: int, seed: int, process_index: int, processes: int) -> list[int]:
    """This process's share (`shard_size` items) of `epoch`'s shuffled order of `count` items (the seed
    and the epoch decide it): processes never take the same item in an epoch."""
    order = np.random.default_rng([seed, epoch]).permutation(count)
    return order[process_index::processes][: shard_size(count, processes)].tolist()


def epoch_batch(count: int, step: int, batch_size: int, seed: int, process_index: int, processes: int) -> list[int]:
    """Indices of this process's `batch_size` items (of `count`) at `step`: a slice of its `epoch_shard`,
    so no item repeats inside an epoch and a resumed run draws what the uninterrupted one would. A
    shard smaller than `batch_size` is taken whole."""
    shard = shard_size(count, processes)
    per_step = min(batch_size, shard)
    epoch, index = divmod(step, shard // per_step)
    return epoch_shard(count, epoch, seed, process_index, processes)[index * per_step : (index + 1) * per_step]


def trainer_accelerator(output_dir, mixed_precision: str = "no", report_to: str | None = None) -> tuple:
    """The `Accelerator` of a trainer (devices, mixed precision, trackers) and how it shards the model
    (`sharding.sharding_of`, which refuses a way the trainers do not run before anything is claimed); the
    main process claims `output_dir` (`atomic.claim_folder`) until `finish_trackers`."""
    from accelerate import Accelerator

    from .sharding import sharding_of

    accelerator = Accelerator(mixed_precision=mixed_precision, log_with=report_to, project_dir=str(output_dir))
    sharding = sharding_of(accelerator)
    if accelerator.is_main_process:  # one run per output folder; a file there or no write access named now
        claim_folder(output_dir)
    return accelerator, sharding


def average_gradients(accelerator, parameters, bucket_elements: int = 2**26) -> None:
    """Replace each gradient by its mean over processes (a no-op for one process), all-reduced in flat
    buckets of at most `bucket_elements` elements, so a full fine-tune never holds a second copy of
    all its gradients. Every process must hold gradients for the same parameters, as it does when all
    run the same graph."""
    if accelerator is None or accelerator.num_processes == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None and not is_sharded(p.grad)]  # FSDP reduced those
    if not grads:
        return
    buckets, size = [[]], 0
    for grad in grads:
        if buckets[-1] and size + grad.numel() > bucket_elements:
            buckets.append([])
            size = 0
        buckets[-1].append(grad)
        size += grad.numel()
    for bucket in buckets:
        flat = accelerator.reduce(torch.cat([g.flatten() for g in bucket]), reduction="mean")
        for grad, chunk in zip(bucket, flat.split([g.numel() for g in bucket])):
            grad.copy_(chunk.view_as(grad))


def optimizer_step(accelerator, optimizer, max_grad_norm: float) -> None:
    """One optimizer step: gradients averaged over processes, clipped to a total norm of `max_grad_norm`,
    applied, then cleared."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    average_gradients(accelerator, parameters)
    clip_gradients(parameters, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def finish_trackers(accelerator) -> None:
    """Close the experiment trackers and give up the output folder. Unlike `accelerator.end_training()`
    this leaves the process group up, so the caller's script can go on (evaluate, or train another
    stage) after a trainer returns."""
    for tracker in accelerator.trackers:
        tracker.finish()
    if accelerator.is_main_process:
        release_folder(accelerator.project_dir)
