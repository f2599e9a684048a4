"""How a trainer's model is spread over its processes, chosen by the accelerate config it is launched with.

- Data parallel (no config, `--multi_gpu`, `examples/configs/accelerate_ddp.yaml`): every process holds
  the whole model; gradients are averaged by hand before each step (`distributed.average_gradients`).
- FSDP2 (`examples/configs/accelerate_fsdp2.yaml`: `distributed_type: FSDP`, `fsdp_version: 2`): the big
  units are `fully_shard`ed over all processes (`shard_units`): each decoder layer, each vision block,
  the vision tower, the input embeddings and the LM head of a DeScore model, each block and the root of a
  Wan transformer. A DeScore model's units are reached only through their own `forward`, so generation,
  scoring and stage 2's forwards need nothing registered with FSDP. FSDP reduce-scatters (averages) the
  units' gradients; the few small parameters left whole (the head, `<reward>`, norms) are averaged by hand.
- DeepSpeed ZeRO-3 (`examples/configs/accelerate_zero3.yaml`: `distributed_type: DEEPSPEED`, `zero_stage:
  3`): every parameter, gradient and optimizer state is partitioned over the processes by DeepSpeed's engine
  (`zero3_engine`), which gathers each module's parameters around its forward, so every entry point works
  as it is. The engine reduces the gradients, clips them and steps; the trainers call `TrainingRun.backward`
  and `TrainingRun.optimizer_step` instead of `loss.backward()` and `optimizer.step()`.

Checkpoints gather the trainable parameters and the optimizer state into full tensors (`checkpoint.py`,
`optimizer_state`), so a run resumes on any number of processes, and `final/` is an ordinary checkpoint
written from the gathered state dict (`whole_state_dict`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import torch
from torch import nn

from ..errors import DeScoreInputError
from ..modeling import DeScoreModel

DATA_PARALLEL, FSDP2, ZERO3 = "data parallel", "fsdp2", "zero3"


def sharding_of(accelerator) -> str:
    """`FSDP2` when accelerate is configured for FSDP version 2, `ZERO3` for DeepSpeed ZeRO stage 3 (by
    `distributed_type` or, on the CPU where accelerate runs both as multi-CPU, by the launcher's
    `ACCELERATE_USE_FSDP` / `ACCELERATE_USE_DEEPSPEED`), else `DATA_PARALLEL`. FSDP version 1, other ZeRO
    stages and Megatron-LM are refused with what to use instead."""
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
    if kind == DistributedType.DEEPSPEED or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        plugin = getattr(accelerator.state, "deepspeed_plugin", None)
        stage = plugin.zero_stage if plugin is not None else int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", 2))
        if stage != 3:
            raise DeScoreInputError(
                f"accelerate is configured for DeepSpeed ZeRO stage {stage}; the trainers run DeepSpeed as ZeRO-3: "
                "set zero_stage: 3 (examples/configs/accelerate_zero3.yaml), or run data parallel"
            )
        if importlib.util.find_spec("deepspeed") is None:
            raise DeScoreInputError(
                "accelerate is configured for DeepSpeed, which is not installed: "
                "pip install 'descore-reward[deepspeed]'"
            )
        return ZERO3
    if kind == DistributedType.MEGATRON_LM:
        raise DeScoreInputError(
            "accelerate is configured for Megatron-LM; the trainers run data parallel, FSDP2 or ZeRO-3: launch "
            "with --config_file examples/configs/accelerate_fsdp2.yaml, accelerate_zero3.yaml or accelerate_ddp.yaml "
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


def shard(module: nn.Module, sharding: str) -> None:
    """Shard `module`'s units (`shard_units`) in place over every process when `sharding` is `FSDP2` (before
    its optimizer is built: the parameters become DTensors); ZeRO-3 partitions a model when its optimizer is
    handed over (`zero3_engine`)."""
    if isinstance(module, DeScoreModel) and sharding != DATA_PARALLEL:
        module.sharded = True  # generation keeps every process in step: each forward is collective
    if sharding != FSDP2:
        return
    from torch.distributed.fsdp import fully_shard

    for unit in shard_units(module):  # explicit: a unit that runs first would otherwise keep its weights whole
        fully_shard(unit, reshard_after_forward=True)


def zero3_engine(module: nn.Module, optimizer=None, max_grad_norm: float = 0.0):
    """Hand `module` (and the optimizer over its trainable parameters, if any: None for a frozen reference)
    to a DeepSpeed ZeRO-3 engine, which partitions its parameters over every process and, with an optimizer,
    its gradients and optimizer state too; gradients are clipped to a total norm of `max_grad_norm` (0: not).
    Mixed precision stays accelerate's autocast over float32 weights, as under the other shardings. Returns
    the engine (`engine.step()` applies an optimizer step)."""
    import deepspeed

    if optimizer is not None:  # torch's own key for parameter names: the optimizer state is saved by name
        names = {id(p): name for name, p in module.named_parameters()}
        for group in optimizer.param_groups:
            group.setdefault("param_names", [names[id(p)] for p in group["params"]])
    config = {
        "train_micro_batch_size_per_gpu": 1,  # the trainers batch and accumulate by themselves
        "gradient_accumulation_steps": 1,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": {"stage": 3},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
    }
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=config)
    if isinstance(module, DeScoreModel):  # written into the embeddings' output by a hook: gathered with them
        embeddings = module.language_backbone.language_model.embed_tokens
        deepspeed.zero.register_external_parameter(embeddings, module.reward_embedding)
    return engine


def zero3_backward(engine, loss: torch.Tensor) -> None:
    """`loss.backward()` under ZeRO-3: gradients reduced and partitioned, added to those of the step's
    earlier backward passes (the engine counts a pass when a forward runs through it, which the trainers'
    forwards do not: each backward marks the start of a new one)."""
    engine.optimizer.clear_backward_seen_flag()
    engine.backward(loss)


def is_partitioned(tensor) -> bool:
    """A parameter that DeepSpeed ZeRO-3 partitions."""
    return hasattr(tensor, "ds_tensor")  # its local partition


@contextlib.contextmanager
def whole_parameters(parameters):
    """`parameters` whole for the block where ZeRO-3 partitions them (every process must enter it)."""
    partitioned = [p for p in parameters if is_partitioned(p)]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned):
        yield


def whole_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the trained module (a DeScore model's backbone, or a Wan transformer) with every
    sharded tensor gathered whole onto the main process's CPU (every process must call this; the others
    get an empty dict)."""
    target = module.backbone if isinstance(module, DeScoreModel) else module
    if any(is_partitioned(p) for p in target.parameters()):
        import torch.distributed as dist

        keep, state = dist.get_rank() == 0, {}
        for name, tensor in target.state_dict(keep_vars=True).items():  # one tensor gathered at a time
            with whole_parameters([tensor]):
                if keep:
                    state[name] = tensor.detach().cpu().clone()
        return state
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(target, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def outside_state_dict(module: nn.Module) -> list[nn.Parameter]:
    """The trained parameters that `whole_state_dict` leaves out: a DeScore model's head and `<reward>`."""
    return [module.reward_embedding, *module.head.parameters()] if isinstance(module, DeScoreModel) else []


def is_sharded(tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded or partitioned tensor gathered whole (every process must call this), or the tensor itself."""
    if is_partitioned(tensor):
        with whole_parameters([tensor]):
            return tensor.detach().clone()
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def copy_full_into(parameter: nn.Parameter, value: torch.Tensor) -> None:
    """Copy the whole tensor `value` into `parameter`, or into this process's shard of it (every process
    must call this for a partitioned parameter, with the same value; its optimizer's float32 copy is set too)."""
    with torch.no_grad():
        if is_partitioned(parameter):
            import deepspeed
            from deepspeed.utils import safe_set_full_fp32_param

            with deepspeed.zero.GatheredParameters([parameter], modifier_rank=0):
                parameter.copy_(value)
            if parameter.requires_grad:
                safe_set_full_fp32_param(parameter, value.to(parameter.device, torch.float32))
        elif is_sharded(parameter):
            from torch.distributed.tensor import distribute_tensor

            value = value.to(parameter.device, parameter.dtype)
            local = distribute_tensor(value, parameter.device_mesh, parameter.placements, src_data_rank=None)
            parameter.to_local().copy_(local.to_local())
        else:
            parameter.copy_(value)


def optimizer_state(model: nn.Module, optimizer) -> dict:
    """The optimizer's state, whole, keyed by parameter name (`torch.distributed.checkpoint`'s full optimizer
    state dict: `{"state": {name: {...}}, "param_groups": [{..., "params": [name, ...]}]}`), on the main
    process's CPU, whatever the sharding (every process must call this)."""
    if not any(is_partitioned(p) for p in model.parameters()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole on the main process only
        return get_optimizer_state_dict(model, optimizer, options=options)
    import torch.distributed as dist
    from deepspeed.utils import safe_get_full_optimizer_state

    keep, parameters = dist.get_rank() == 0, dict(model.named_parameters())
    inner = next(iter(optimizer.state.values()), {})  # the state of one of ZeRO-3's flat partitions
    keys = [key for key, value in inner.items() if torch.is_tensor(value) and value.dim() > 0]
    state = {}
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            values = {key: safe_get_full_optimizer_state(parameters[name], key) for key in keys}
            if keep and inner:
                state[name] = {"step": inner["step"].detach().cpu().clone(), **{k: v.cpu() for k, v in values.items()}}
    groups = [
        {**{k: v for k, v in group.items() if k not in ("params", "param_names")}, "params": group["param_names"]}
        for group in optimizer.param_groups
    ]
    return {"state": state, "param_groups": groups} if keep else {}


def load_optimizer_state(model: nn.Module, optimizer, state: dict) -> None:
    """Put an `optimizer_state` back (every process, with the same `state`), into this process's share of
    it where the optimizer is sharded."""
    if not any(is_partitioned(p) for p in model.parameters()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    from deepspeed.utils import safe_set_full_optimizer_state

    saved_entries = list(state["state"].values())
    if not saved_entries:
        return
    step = saved_entries[0]["step"]
    keys = [key for key in saved_entries[0] if key != "step"]
    zero = next(p for p in model.parameters() if is_partitioned(p) and p.requires_grad)._z3_optimizer
    for flat in zero.fp32_partitioned_groups_flat:  # a new optimizer has no state yet: each flat partition's
        inner = optimizer.state[flat]
        inner["step"] = step.clone()
        for key in keys:
            inner.setdefault(key, torch.zeros_like(flat))
    parameters = dict(model.named_parameters())
    for group, saved in zip(optimizer.param_groups, state["param_groups"], strict=True):
        group.update({k: v for k, v in saved.items() if k not in ("params", "param_names")})
        for name in group["param_names"]:
            for key in keys:
                safe_set_full_optimizer_state(parameters[name], state["state"][name][key].to(torch.float32), key)


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
