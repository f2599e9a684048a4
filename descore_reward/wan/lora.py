"""The Wan trainers' setup: a `WanPipeline` loaded for training, a LoRA on its `WanTransformer3DModel`,
the adapter-free reference, and the trained LoRA written where `WanPipeline.load_lora_weights` reads it.
Checkpoints, state and artefacts are every trainer's (`descore_reward.training.run`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..atomic import atomic_directory
from ..training.run import TrainingRun

# Attention and feed-forward projections of every block, and the output projection.
WAN_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", "proj_out"]


# The frozen text encoder and VAE in the compute dtype of `TrainerConfig.mixed_precision`.
PRECISIONS = {"no": torch.float32, "bf16": torch.bfloat16}


def load_pipeline_for_training(path: str, mixed_precision: str = "no"):
    """A `WanPipeline` whose frozen text encoder and VAE are in the `mixed_precision` dtype and whose
    transformer, which the LoRA trains under autocast, stays in float32."""
    from diffusers import WanPipeline

    pipeline = WanPipeline.from_pretrained(
        path, torch_dtype={"transformer": torch.float32, "default": PRECISIONS[mixed_precision]}
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def add_transformer_lora(transformer, rank: int, alpha: int) -> None:
    """Freeze `transformer` and give it a trainable LoRA adapter (Gaussian init) on `WAN_LORA_TARGETS`."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=WAN_LORA_TARGETS)
    )


@contextlib.contextmanager
def reference_transformer(transformer):
    """`transformer` with its LoRA switched off, the reference policy of Flow-DPO and GRPO, for the block
    (no gradients); switched back on after it, also on an error."""
    transformer.disable_adapters()
    try:
        with torch.no_grad():
            yield transformer
    finally:
        transformer.enable_adapters()


LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' name


def start_lora_training(config, model, name: str):
    """The start that the Wan trainers share: a `TrainingRun` (accelerate, seeds), the pipeline (`model`,
    or loaded from `config.pipeline` when None) on this process's device, a LoRA with the same initial
    weights on every process, AdamW over it, and the run resumed from the newest checkpoint in
    `config.output_dir` when there is one.

    `config` is a `TrainerConfig` with `pipeline`, `steps`, `lora_rank` and `lora_alpha`. Returns
    `(run, pipeline, optimizer)`.
    """
    run = TrainingRun(config, name, config.steps)
    pipeline = (model or load_pipeline_for_training(config.pipeline, config.mixed_precision)).to(run.accelerator.device)
    torch.manual_seed(config.seed)  # the adapter's initial weights: the same whether the pipeline was passed or loaded
    add_transformer_lora(pipeline.transformer, config.lora_rank, config.lora_alpha)
    run.shard(pipeline.transformer)
    parameters = [p for p in pipeline.transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate)
    run.resume(pipeline.transformer, optimizer)
    return run, pipeline, optimizer


def save_lora(pipeline, path, transformer_state: dict | None = None) -> Path:
    """Atomically write the transformer's LoRA to the folder `path`, where `WanPipeline.load_lora_weights`
    reads it (the trained result; checkpoints hold the optimizer too). `transformer_state`: the
    transformer's state dict gathered whole when it is sharded (`training/sharding.py`)."""
    from peft.utils import get_peft_model_state_dict

    lora = get_peft_model_state_dict(pipeline.transformer, state_dict=transformer_state)
    with atomic_directory(path, marker=LORA_WEIGHTS) as staging:
        type(pipeline).save_lora_weights(staging, transformer_lora_layers=lora)
    return Path(path)
