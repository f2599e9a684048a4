"""How a trainer's model is spread over its processes, chosen by the accelerate config it is launched with.

- Data parallel (no config, `--multi_gpu`, `examples/configs/accelerate_ddp.yaml`): every process holds
  the whole model; gradients are averaged by hand before each step (`distributed.average_gradients`).
- FSDP2 (`examples/configs/accelerate_fsdp2.yaml`: `distributed_type: FSDP`, `fsdp_version: 2`): the big
  units are `fully_shard`ed over all processes (`shard_units`): each decoder layer, each vision block,
  the vision tower, the input embeddings and the LM head of a DeScore model, each block and the root of a
  Wan transformer. A DeScore model's units are reached only through their own `forward`, so generation,
  scoring and stage 2's forwards need nothing registered with FSDP. FSDP reduce-scatters (averages) the
  units' gradients; the few small parameters left whole (the head, `<reward>`, norms) are averaged by hand.

Checkpoints gather the trainable parameters and the optimizer state into full tensors (`checkpoint.py`),
so a run resumes on any number of processes, and `final/` is an ordinary checkpoint written from the
gathered state dict (`whole_state_dict`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import DeScoreInputError
from ..modeling import DeScoreModel

DATA_PARALLEL, FSDP2 = "data parallel", "fsdp2"


def sharding_of(accelerator) -> str:
    """`FSDP2` when accelerate is configured for FSDP version 2 (by `distributed_type` or, on the CPU where
    accelerate runs FSDP configs as multi-CPU, by the launcher's `ACCELERATE_USE_FSDP`), else `DATA_PARALLEL`.
    FSDP version 1, DeepSpeed and Megatron-LM are refused with what to use instead."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        plugin = getattr(accelerator.state, "fsdp_plugin", None)
        version = plugin.fsdp_version if plugin is not None else int(os.environ.get("FSDP_VERSION", "1"))
        if version != 2:
            raise DeScoreInputError(
                "accelerate is configured for FSDP version 1; the trainers shard with FSDP2: set "
                "fsdp_version: 2 (examples/configs/accelerate_fsdp2.yaml)"
            )
        return FSDP2
    if kind in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        raise DeScoreInputError(
            f"accelerate is configured for {kind.value}; the trainers run data parallel or FSDP2: launch with "
            "--config_file examples/configs/accelerate_fsdp2.yaml (sharded) or accelerate_ddp.yaml "
            "(docs/scaling-out.md)"
        )
    return DATA_PARALLEL


def shard_units(module: nn.Module) -> list[nn.Module]:
    """The modules FSDP2 shards as units, inner ones first: of a `DeScoreModel` (see the module docstring;
    input embeddings tied to the LM head stay whole, a unit cannot share them), or of a Wan transformer."""
    if isinstance(module, DeScoreModel):
        language, vision = module.language_backbone.language_model, module.language_backbone.visual
        embeddings, lm_head = language.embed_tokens, module.unwrapped_backbone.lm_head
        tied = lm_head.weight is embeddings.weight
        return [*language.layers, *vision.blocks, vision, *([] if tied else [embeddings, lm_head])]
    return [*module.blocks, module]


def shard(module: nn.Module, sharding: str) -> list[nn.Module]:
    """Shard `module` in place over every process when `sharding` is `FSDP2` (before its optimizer is
    built: the parameters become DTensors); returns its units (none for data parallel)."""
    if sharding != FSDP2:
        return []
    from torch.distributed.fsdp import fully_shard

    units = shard_units(module)
    for unit in units:  # explicit: a unit that runs first would otherwise keep its weights whole after forward
        fully_shard(unit, reshard_after_forward=True)
    if isinstance(module, DeScoreModel):
        module.sharded = True
    return units


def whole_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the trained module (a DeScore model's backbone, or a Wan transformer) with every
    sharded tensor gathered whole onto the main process's CPU (every process must call this; the others
    get an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    target = module.backbone if isinstance(module, DeScoreModel) else module
    return get_model_state_dict(target, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def is_sharded(tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded tensor gathered whole (every process must call this), or the tensor itself."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def copy_full_into(parameter: nn.Parameter, value: torch.Tensor) -> None:
    """Copy the whole tensor `value` into `parameter`, or into this process's shard of it."""
    with torch.no_grad():
        if is_sharded(parameter):
            from torch.distributed.tensor import distribute_tensor

            value = value.to(parameter.device, parameter.dtype)
            local = distribute_tensor(value, parameter.device_mesh, parameter.placements, src_data_rank=None)
            parameter.to_local().copy_(local.to_local())
        else:
            parameter.copy_(value)


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` for gradients of which some are sharded: the total norm counts each
    shard once (summed over processes), then every gradient is scaled by the same factor. Returns the norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not any(is_sharded(grad) for grad in grads):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    import torch.distributed as dist

    squares = torch.zeros((), dtype=torch.float64)
    sharded = torch.zeros((), dtype=torch.float64)
    for grad in grads:
        if is_sharded(grad):
            sharded += torch.linalg.vector_norm(grad.to_local().double()).cpu() ** 2
        else:
            squares += torch.linalg.vector_norm(grad.double()).cpu() ** 2
    dist.all_reduce(sharded)
    norm = (squares + sharded).sqrt()
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for grad in grads:
        (grad.to_local() if is_sharded(grad) else grad).mul_(scale.to(grad.dtype))
    return norm
