"""DeScore as a reward function for diffusion post-training (the Flow-GRPO convention).

    reward_fn = DeScoreReward("path/to/descore")      # or DeScoreReward() with DESCORE_MODEL set
    scores, info = reward_fn(videos, prompts, metadata)      # scores: float32 array (B,)

`videos` may be what `WanPipeline` returns: `output_type="pt"` `(B, T, C, H, W)` floats in [0, 1],
`"np"` `(B, T, H, W, C)` floats, `"pil"` lists of PIL frame lists; uint8 works too, and so do lists
of file paths or of per-video tensors. In-memory videos are never written to disk. Several rewards
combine with `WeightedRewards`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..engines import ENGINES, load_scorer
from ..errors import CheckpointError, DeScoreInputError
from ..modeling import DeScoreModel
from ..video import Video, VideoInputError, VideoSampling, load_video

logger = logging.getLogger(__name__)
RewardFn = Callable[..., tuple[np.ndarray, dict]]


def split_batch(videos) -> list:
    """A batch of videos as a list of single videos (tensors / arrays of 5 dimensions are split)."""
    if isinstance(videos, (torch.Tensor, np.ndarray)):
        if videos.ndim != 5:
            raise VideoInputError(
                f"videos: expected 5 dimensions (B, T, C, H, W) or (B, T, H, W, C), got {tuple(videos.shape)}"
            )
        return list(videos)
    if isinstance(videos, (str, bytes)) or not isinstance(videos, Sequence):
        raise VideoInputError(f"videos: expected a batch (5-D tensor/array or a list), got {type(videos).__name__}")
    return list(videos)


MODEL_VARIABLE = "DESCORE_MODEL"
ON_ERROR = ("raise", "nan", "fill")
_shared_models: dict[tuple, object] = {}
_model_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one per model, however many rewards
_shared_lock = threading.Lock()


def shared_model(
    path: str | os.PathLike,
    device: str | torch.device,
    dtype: torch.dtype | None = None,
    engine: str = "hf",
    engine_arguments: dict | None = None,
):
    """One loaded scorer (`engines.load_scorer`) per (checkpoint, engine, device, dtype) in this process: a
    training script that builds its train and eval rewards separately (Flow-GRPO does) holds the 8B
    backbone once."""
    arguments = engine_arguments or {}
    key = (str(Path(path).resolve()), engine, str(torch.device(device)), dtype, json.dumps(arguments, default=str))
    with _shared_lock:
        if key not in _shared_models:
            _shared_models[key] = load_scorer(path, engine, device=device, dtype=dtype, **arguments)
        return _shared_models[key]


def _checkpoint_from_environment() -> str:
    path = os.environ.get(MODEL_VARIABLE)
    if not path:
        raise CheckpointError(
            f"DeScoreReward() needs a checkpoint: pass its folder, or set {MODEL_VARIABLE}=/path/to/descore. "
            "Get one with `descore train cold-start`, `descore convert official` (the authors' release), or "
            "`descore demo --out DIR` (a tiny CPU model in DIR/cold_start/final)"
        )
    return path


class DeScoreReward:
    """A DeScore model as `reward_fn(videos, prompts, metadata) -> (scores, info)`.

    model: a DeScore checkpoint folder (or, for engine "vllm", an exported one), or what scores: a loaded
        `DeScoreModel`, `VLLMEngine` or `DeScoreClient`; None reads the folder from the `DESCORE_MODEL`
        environment variable. Folders load once per process (`shared_model`).
    engine: "hf" (Hugging Face `generate`) or "vllm" (`engines.VLLMEngine`: continuous batching, for
        think mode at scale); `engine_arguments` go to `vllm.LLM` (`gpu_memory_utilization`, ...).
    server: the URL of a DeScore server (`descore serve`) to score on instead of a local model.
    batch_size: videos per batch (default: the scorer's: 8 on "hf", 64 on "vllm" and the server).
    think: generate a CoT before scoring (slower; `info` then holds CoTs and sub-scores).
    input_fps: frame rate of in-memory videos (default: the model's `sampling.input_fps`, 16 as Wan
        exports). Files carry their own rate. (`fps`, its old name, still works with a warning.)
    on_error: what a video that cannot be scored gives: "raise"; "nan" (its score is NaN); or "fill"
        (`fill_value`). Every failure is logged and its reason is in `info["errors"]`; `info["valid"]`
        marks the scores that come from the model.
    Calls accept and ignore extra keyword arguments (Flow-GRPO passes `only_strict`), never draw from or
    rewind the global random generators, and may come from several threads (one runs at a time).
    """

    def __init__(
        self,
        model=None,
        think: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int | None = None,
        input_fps: float | None = None,
        on_error: str = "raise",
        fill_value: float = 0.0,
        max_new_tokens: int | None = None,
        fps: float | None = None,
        engine: str = "hf",
        server: str | None = None,
        engine_arguments: dict | None = None,
    ):
        if fps is not None:
            warnings.warn(
                "DeScoreReward(fps=...) is now input_fps: the frame rate of in-memory videos, not a sampling rate",
                DeprecationWarning,
                stacklevel=2,
            )
            input_fps = fps if input_fps is None else input_fps
        if on_error not in ON_ERROR:
            raise DeScoreInputError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if batch_size is not None and batch_size < 1:
            raise DeScoreInputError(f"batch_size must be at least 1, got {batch_size}")
        if engine not in ENGINES:
            raise DeScoreInputError(f"engine {engine!r}: expected one of {ENGINES}")
        if server is not None:
            if model is not None:
                raise DeScoreInputError("give a model or a server, not both: the server holds its own model")
            from ..engines.client import DeScoreClient

            self.model = DeScoreClient(server)
        elif model is None or isinstance(model, (str, os.PathLike)):
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            path = model or _checkpoint_from_environment()
            self.model = shared_model(path, device, dtype, engine, engine_arguments)
        else:
            self.model = model.eval() if isinstance(model, DeScoreModel) else model
        sampling = self.model.config.sampling
        self.sampling = dataclasses.replace(sampling, input_fps=input_fps) if input_fps is not None else sampling
        self.input_fps_given = input_fps is not None
        self.think, self.batch_size, self.max_new_tokens = think, batch_size, max_new_tokens
        self.on_error, self.fill_value = on_error, fill_value
        with _shared_lock:  # one backbone, one caller at a time, across every reward built on it
            self._lock = _model_locks.setdefault(self.model, threading.Lock())

    def __call__(self, videos, prompts: Sequence[str] | str, metadata: Sequence[dict] | None = None, **ignored):
        """Scores `(B,)` float32 and an info dict (`errors`, `valid`; `cot`, `sub_scores` when thinking)."""
        return self.score(videos, prompts, self.sampling)

    def score(self, videos, prompts: Sequence[str] | str, sampling: VideoSampling) -> tuple[np.ndarray, dict]:
        """`__call__` with an explicit `VideoSampling` (how many frames, how many pixels)."""
        videos = split_batch(videos)
        prompts = [prompts] * len(videos) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(videos):
            raise DeScoreInputError(
                f"got {len(videos)} videos and {len(prompts)} prompts; expected one prompt per video"
            )
        if self.input_fps_given and any(isinstance(video, (str, os.PathLike)) for video in videos):
            warnings.warn("input_fps applies to in-memory videos only: files keep their own frame rate", stacklevel=2)
        loaded: list[Video | None] = []
        errors: list[str | None] = []
        for index, video in enumerate(videos):
            try:
                loaded.append(load_video(video, sampling, name=f"videos[{index}]"))
                errors.append(None)
            except VideoInputError as error:
                if self.on_error == "raise":
                    raise
                failed = "NaN" if self.on_error == "nan" else self.fill_value
                logger.warning("DeScoreReward: %s; its score is %s", error, failed)
                loaded.append(None)
                errors.append(str(error))
        keep = [i for i, video in enumerate(loaded) if video is not None]
        scores = np.full(len(videos), self._failed_score, dtype=np.float32)
        info = {"errors": errors, "valid": [video is not None for video in loaded]}
        if self.think:
            info.update(cot=[None] * len(videos), sub_scores=[None] * len(videos))
        if keep:
            with self._lock:
                batch = {} if self.batch_size is None else {"batch_size": self.batch_size}
                results = self.model.score(
                    [loaded[i] for i in keep],
                    [prompts[i] for i in keep],
                    think=self.think,
                    max_new_tokens=self.max_new_tokens,
                    **batch,
                )
            for i, result in zip(keep, results, strict=True):
                scores[i] = result.reward
                if self.think:
                    info["cot"][i], info["sub_scores"][i] = result.cot, result.scores
        return scores, info

    @property
    def _failed_score(self) -> float:
        return self.fill_value if self.on_error == "fill" else math.nan


class WeightedRewards:
    """Several reward functions as one: `sum_k weight_k * fn_k(...)`, each term also in `info[name]`."""

    def __init__(self, rewards: dict[str, tuple[RewardFn, float]]):
        if not rewards:
            raise DeScoreInputError("WeightedRewards needs at least one reward function")
        self.rewards = rewards

    def __call__(self, videos, prompts, metadata=None):
        total, info = None, {}
        for name, (function, weight) in self.rewards.items():
            scores, details = function(videos, prompts, metadata)
            scores = np.asarray(scores, dtype=np.float32)
            info[name] = {"scores": scores, **details}
            total = weight * scores if total is None else total + weight * scores
        return total, info
