"""`descore convert official`: the authors' released checkpoints as ordinary DeScore checkpoints.

Their checkpoint is a Hugging Face Qwen3-VL folder whose tokenizer holds `<Reward>` and whose input
embedding row for it is trained, optionally a PEFT `lora_adapter/` inside it (stage 1), and a
separate `rm_head.pth`: a state dict holding the `[1, hidden]` weight of a bias-free linear head
under `rm_head.weight` or `base_model.model.rm_head.weight`, possibly nested under `model`.

The conversion merges the adapter, copies the `<Reward>` row into DeScore's reward embedding and
the head weight into its head, and records the `descore` rubric (with the instruction text given,
so the model is asked what it was trained on). `rm_head.pth` is read with
`torch.load(weights_only=True)` only: a file that needs more than tensors is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import CheckpointError, first_line
from .modeling import DeScoreConfig, DeScoreModel
from .rubrics import read_instruction_file
from .video import VideoSampling

OFFICIAL_REWARD_TOKEN = "<Reward>"
HEAD_KEYS = ("rm_head.weight", "base_model.model.rm_head.weight")
ADAPTER_DIR = "lora_adapter"


def read_official_head(path: str | os.PathLike) -> torch.Tensor:
    """The `[1, hidden]` head weight of an `rm_head.pth`; `CheckpointError` names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such head file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle.UnpicklingError for anything beyond tensors, others for torn files
        reason = first_line(error, limit=160)
        raise CheckpointError(f"{path}: not a state dict of tensors that loads safely ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    for key in HEAD_KEYS:
        weight = state.get(key)
        if isinstance(weight, torch.Tensor):
            if weight.ndim != 2 or weight.shape[0] != 1:
                raise CheckpointError(f"{path}: {key} has shape {list(weight.shape)}, expected [1, hidden]")
            return weight.float()
    raise CheckpointError(f"{path}: holds none of {list(HEAD_KEYS)}; its keys are {sorted(state)[:10]}")


def convert_official(
    model_dir: str | os.PathLike,
    rm_head: str | os.PathLike,
    out: str | os.PathLike,
    instruction_file: str | os.PathLike | None = None,
    sampling: VideoSampling | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the authors' checkpoint (`model_dir` + `rm_head`) as a DeScore checkpoint in `out`."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_dir, out = Path(model_dir), Path(out)
    head = read_official_head(rm_head)  # checked before the backbone loads
    template = read_instruction_file(instruction_file)
    config = DeScoreConfig(
        backbone=str(model_dir.resolve()),
        reward_token=OFFICIAL_REWARD_TOKEN,
        head_bias=False,
        rubric="descore",
        instruction_template=template,
        sampling=sampling or VideoSampling(),
    )
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
    processor = AutoProcessor.from_pretrained(model_dir)
    token_id = processor.tokenizer.convert_tokens_to_ids(OFFICIAL_REWARD_TOKEN)
    if token_id is None or token_id == processor.tokenizer.unk_token_id:
        raise CheckpointError(f"{model_dir}: its tokenizer has no {OFFICIAL_REWARD_TOKEN} token")
    backbone = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype)
    if (model_dir / ADAPTER_DIR).is_dir():
        backbone = PeftModel.from_pretrained(backbone, model_dir / ADAPTER_DIR).merge_and_unload()
    hidden_size = backbone.config.get_text_config().hidden_size
    if head.shape[1] != hidden_size:
        raise CheckpointError(f"{rm_head}: head of width {head.shape[1]}, the backbone's hidden size is {hidden_size}")
    trained_row = backbone.get_input_embeddings().weight[token_id].detach().float().clone()
    model = DeScoreModel(backbone.eval(), processor, config)
    with torch.no_grad():
        model.reward_embedding.copy_(trained_row)
        model.head.layers.weight.copy_(head)
    model.save_pretrained(out, include_backbone=True)
    return out
