"""A DeScore checkpoint as a plain Hugging Face folder that vLLM serves (`descore export vllm`).

vLLM generates; it does not return hidden states. DeScore's reward is `head(h)`, a dot product of the
head's weight with the last hidden state at `<reward>`, which is what the LM head computes for one
vocabulary row. So the export writes:

- the `<reward>` embedding into `embed_tokens[<reward>]` (the forward hook's job in `DeScoreModel`),
- the head's weight into `lm_head[<reward>]` (untied from the input embeddings where they were tied),
- the LoRA adapter merged, the vision tower as trained, the tokenizer with `<reward>`,
- `descore_export.json`: the DeScore config (rubric, instruction text, video sampling) and the decoding
  settings, so the served model scores as it was trained to.

The logit of `<reward>` at the last position of `[prompt ; cot ; <reward>]` is then the reward. A CoT
must never write `<reward>` (its logit is the reward, not a next-token score): every engine suppresses it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel

from ..atomic import atomic_directory
from ..errors import CheckpointError, DeScoreInputError
from ..hub import checkpoint_folder
from ..modeling import DeScoreConfig, DeScoreModel

EXPORT_NAME = "descore_export.json"
EXPORT_FORMAT = 1


@dataclass(frozen=True)
class ExportedScoring:
    """What an exported folder's `descore_export.json` records besides the backbone's weights.

    config: the checkpoint's `DeScoreConfig` (its instruction text written out).
    reward_token_id: the vocabulary row that holds the head.
    suppressed_token_ids: tokens a CoT never contains (`<reward>`, the vision placeholders).
    eos_token_ids: the tokens that end a CoT.
    max_new_tokens, repetition_penalty: the rubric's decoding budget and penalty.
    """

    config: DeScoreConfig
    reward_token_id: int
    suppressed_token_ids: list[int]
    eos_token_ids: list[int]
    max_new_tokens: int
    repetition_penalty: float | None

    def to_dict(self) -> dict:
        return {"format": EXPORT_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict, source: str) -> ExportedScoring:
        if not isinstance(values, dict) or values.get("format") != EXPORT_FORMAT:
            raise CheckpointError(f"{source}: not a descore export of format {EXPORT_FORMAT}; export it again")
        values = {name: value for name, value in values.items() if name != "format"}
        try:
            values["config"] = DeScoreConfig.from_dict(dict(values["config"]), source=source)
            return cls(**values)
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{source}: incomplete or unknown fields ({error}); export it again") from None


def read_export(path: str | os.PathLike) -> ExportedScoring:
    """The `ExportedScoring` of an exported folder (or its Hub id); `CheckpointError` naming it if it is not one."""
    path = checkpoint_folder(path)  # a folder, or a Hub id of one
    sidecar = path / EXPORT_NAME
    if not sidecar.is_file():
        raise CheckpointError(
            f"{path}: not a descore export (no {EXPORT_NAME}); "
            "write one with `descore export vllm --model CHECKPOINT --out DIR`"
        )
    try:
        values = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{sidecar}: cannot read it ({error})") from None
    return ExportedScoring.from_dict(values, source=str(sidecar))


def export_for_vllm(checkpoint: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write the DeScore checkpoint folder `checkpoint` to `out` as described above, atomically; returns
    `out`. `dtype`: the exported weights' (default: as the backbone loads). A head with a bias cannot be one
    vocabulary row and is refused before anything is written."""
    model = DeScoreModel.from_pretrained(checkpoint, dtype=dtype)
    if model.head.layers.bias is not None:
        raise DeScoreInputError(
            f"{checkpoint}: its head has a bias (head_bias=True), which an LM-head row cannot hold; "
            "score it with the Hugging Face engine"
        )
    rubric = model.rubric
    scoring = ExportedScoring(
        config=dataclasses.replace(model.config, instruction_template=rubric.instruction_template),
        reward_token_id=model.reward_token_id,
        suppressed_token_ids=model.unwritable_token_ids(),
        eos_token_ids=model.eos_token_ids(),
        max_new_tokens=rubric.max_new_tokens,
        repetition_penalty=rubric.repetition_penalty,
    )
    backbone = model.backbone.merge_and_unload() if isinstance(model.backbone, PeftModel) else model.backbone
    embeddings, lm_head = backbone.get_input_embeddings(), backbone.get_output_embeddings()
    if lm_head.weight.data_ptr() == embeddings.weight.data_ptr():  # tied: the head's row must not move the input
        lm_head.weight = torch.nn.Parameter(embeddings.weight.detach().clone())
    for config in (backbone.config, backbone.config.get_text_config()):
        config.tie_word_embeddings = False
    row = model.reward_token_id
    with torch.no_grad():
        embeddings.weight[row] = model.reward_embedding.to(embeddings.weight)
        lm_head.weight[row] = model.head.layers.weight[0].to(lm_head.weight)
    with atomic_directory(out, marker=EXPORT_NAME) as staging:
        backbone.save_pretrained(staging)
        model.processor.save_pretrained(staging)
        (staging / EXPORT_NAME).write_text(json.dumps(scoring.to_dict(), indent=2))
    return Path(out)
