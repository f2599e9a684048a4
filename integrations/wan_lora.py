"""LoRA on a diffusers `WanTransformer3DModel`, and training checkpoints for it.

A checkpoint folder holds the LoRA where `WanPipeline.load_lora_weights` reads it, the optimizer
state and the trainer state; it is written atomically, so the newest one is always safe to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import torch

from ..atomic import atomic_directory
from ..training.distributed import data_parallel_accelerator

# Attention and feed-forward projections of every block, and the output projection.
WAN_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", "proj_out"]


# The trainers step a plain optimizer with no loss scaling, so fp16 is not offered.
PRECISIONS = {"no": torch.float32, "bf16": torch.bfloat16}


def check_precision(mixed_precision: str) -> None:
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {sorted(PRECISIONS)}, got {mixed_precision!r}")


def load_pipeline_for_training(path: str, mixed_precision: str = "no"):
    """A `WanPipeline` whose frozen text encoder and VAE are in the `mixed_precision` dtype and whose
    transformer, which the LoRA trains under autocast, stays in float32."""
    from diffusers import WanPipeline

    check_precision(mixed_precision)
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


LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
STATE_NAME = "trainer_state.json"


def save_checkpoint(pipeline, optimizer, state: dict, path: Path) -> None:
    """Atomically write the transformer's LoRA (where `WanPipeline.load_lora_weights` reads it), the
    optimizer state and the trainer state into one folder."""
    from peft.utils import get_peft_model_state_dict

    with atomic_directory(path, marker=STATE_NAME) as staging:
        lora = get_peft_model_state_dict(pipeline.transformer)
        type(pipeline).save_lora_weights(staging, transformer_lora_layers=lora)
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        (staging / STATE_NAME).write_text(json.dumps(state))


def start_lora_training(config, pipeline, checkpoint: Path, project: str, fresh_state: dict):
    """The start that the Wan trainers share: accelerate (mixed precision, trackers), the pipeline (loaded
    when None) on this process's device, a LoRA with the same initial weights on every process, AdamW over
    it, and the trainer state, resumed from `checkpoint` when one is there.

    `config` has the fields the trainers' configs share (pipeline, output_dir, mixed_precision,
    report_to, seed, lora_rank, lora_alpha, learning_rate). Returns `(accelerator, pipeline, optimizer,
    state)`.
    """
    accelerator = data_parallel_accelerator(config.output_dir, config.mixed_precision, config.report_to)
    pipeline = (pipeline or load_pipeline_for_training(config.pipeline, config.mixed_precision)).to(accelerator.device)
    torch.manual_seed(config.seed)  # the adapter's initial weights, the same on every process
    add_transformer_lora(pipeline.transformer, config.lora_rank, config.lora_alpha)
    parameters = [p for p in pipeline.transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate)
    state = load_checkpoint(pipeline, optimizer, checkpoint) if (checkpoint / STATE_NAME).is_file() else fresh_state
    if accelerator.is_main_process and config.report_to:
        accelerator.init_trackers(project, {k: str(v) for k, v in dataclasses.asdict(config).items()})
    return accelerator, pipeline, optimizer, state


def load_checkpoint(pipeline, optimizer, path: Path) -> dict:
    """Restore the LoRA, the optimizer and the trainer state written by `save_checkpoint`."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = {k.removeprefix("transformer."): v for k, v in load_file(path / LORA_WEIGHTS).items()}
    set_peft_model_state_dict(pipeline.transformer, weights)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return json.loads((path / STATE_NAME).read_text())
