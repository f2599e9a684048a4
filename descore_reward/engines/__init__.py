"""Where DeScore runs besides Hugging Face `generate` (which `DeScoreModel.score` uses):

- `export`: a checkpoint as a plain Hugging Face folder for vLLM, the head in the LM head's `<reward>` row;
- `vllm_engine`: `VLLMEngine`, `DeScoreModel.score` on a vLLM engine (continuous batching, prefix cache);
- `server`: that engine behind HTTP (`descore serve`), on vLLM's async engine;
- `client`: `DeScoreClient`, the server's scores as `DeScoreModel.score` returns them.
"""

from __future__ import annotations

import os

ENGINES = ("hf", "vllm")


def load_scorer(
    model: str | os.PathLike,
    engine: str = "hf",
    device=None,
    dtype=None,
    backbone: str | os.PathLike | None = None,
    **engine_arguments,
):
    """What scores: a `DeScoreModel` (engine "hf": a checkpoint folder) or a `VLLMEngine` (engine "vllm": an
    exported folder or a checkpoint, exported on the way; `engine_arguments` go to `vllm.LLM`). Both have
    `score(videos, prompts, think=..., ...) -> list[ScoreResult]` and `config`, as `DeScoreClient` has."""
    if engine not in ENGINES:
        from ..errors import DeScoreInputError

        raise DeScoreInputError(f"engine {engine!r}: expected one of {ENGINES}")
    if engine == "vllm":
        from .vllm_engine import VLLMEngine

        return VLLMEngine(model, **({"dtype": str(dtype).removeprefix("torch.")} if dtype else {}), **engine_arguments)
    from ..modeling import DeScoreModel

    return DeScoreModel.from_pretrained(model, dtype=dtype, device=device, backbone=backbone).eval()


def check_model_folder(model: str | os.PathLike, engine: str = "hf") -> None:
    """Fail before anything loads when `model` cannot be scored on `engine`: "hf" needs a DeScore checkpoint,
    "vllm" an exported folder or a checkpoint, either a folder or a Hub id (`FileNotFoundError` /
    `CheckpointError` naming it)."""
    from ..hub import checkpoint_folder
    from ..modeling import read_config
    from .export import EXPORT_NAME, read_export

    folder = checkpoint_folder(model)
    if engine == "vllm" and (folder / EXPORT_NAME).is_file():
        read_export(folder)
    else:
        read_config(folder)
