"""DeScore as a reward function for diffusion post-training (the Flow-GRPO convention).

    reward_fn = DeScoreReward("path/to/descore", think=False)
    scores, info = reward_fn(videos, prompts, metadata)      # scores: float32 array (B,)

`videos` may be what `WanPipeline` returns: `output_type="pt"` `(B, T, C, H, W)` floats in [0, 1],
`"np"` `(B, T, H, W, C)` floats, `"pil"` lists of PIL frame lists; uint8 works too, and so do lists
of file paths or of per-video tensors. In-memory videos are never written to disk. Several rewards
combine with `WeightedRewards`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..modeling import DeScoreModel
from ..video import Video, VideoInputError, load_video

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


class DeScoreReward:
    """A DeScore model as `reward_fn(videos, prompts, metadata) -> (scores, info)`.

    model: a DeScore checkpoint directory (or a loaded `DeScoreModel`).
    think: generate a CoT before scoring (slower; `info` then holds CoTs and sub-scores).
    fps: frame rate of in-memory videos (default: the model's `sampling.input_fps`, 16 as Wan exports).
    on_error: "raise" on a bad video, or "nan": its score is NaN, the reason goes to `info["errors"]`
        and a warning is logged. Never a silent 0.
    """

    def __init__(
        self,
        model: str | DeScoreModel,
        think: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 8,
        fps: float | None = None,
        on_error: str = "raise",
        max_new_tokens: int = 512,
    ):
        if on_error not in ("raise", "nan"):
            raise ValueError(f"on_error must be 'raise' or 'nan', got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(model, DeScoreModel):
            self.model = model
        else:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.model = DeScoreModel.from_pretrained(model, dtype=dtype, device=device)
        self.model.eval()
        sampling = self.model.config.sampling
        self.sampling = dataclasses.replace(sampling, input_fps=fps) if fps is not None else sampling
        self.think, self.batch_size, self.on_error, self.max_new_tokens = think, batch_size, on_error, max_new_tokens
        self._lock = threading.Lock()  # one backbone, one caller at a time (worker threads welcome)

    def __call__(self, videos, prompts: Sequence[str], metadata: Sequence[dict] | None = None):
        """Scores `(B,)` float32 (NaN for failed videos with `on_error="nan"`) and an info dict."""
        videos = split_batch(videos)
        prompts = [prompts] * len(videos) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(videos):
            raise ValueError(f"got {len(videos)} videos and {len(prompts)} prompts; expected one prompt per video")
        loaded: list[Video | None] = []
        errors: list[str | None] = []
        for index, video in enumerate(videos):
            try:
                loaded.append(load_video(video, self.sampling, name=f"videos[{index}]"))
                errors.append(None)
            except VideoInputError as error:
                if self.on_error == "raise":
                    raise
                logger.warning("DeScoreReward: %s; its score is NaN", error)
                loaded.append(None)
                errors.append(str(error))
        keep = [i for i, video in enumerate(loaded) if video is not None]
        scores = np.full(len(videos), math.nan, dtype=np.float32)
        info = {"errors": errors}
        if self.think:
            info.update(cot=[None] * len(videos), sub_scores=[None] * len(videos))
        if keep:
            with self._lock:
                results = self.model.score(
                    [loaded[i] for i in keep],
                    [prompts[i] for i in keep],
                    think=self.think,
                    batch_size=self.batch_size,
                    max_new_tokens=self.max_new_tokens,
                )
            for i, result in zip(keep, results, strict=True):
                scores[i] = result.reward
                if self.think:
                    info["cot"][i], info["sub_scores"][i] = result.cot, result.scores
        return scores, info


class WeightedRewards:
    """Several reward functions as one: `sum_k weight_k * fn_k(...)`, each term also in `info[name]`."""

    def __init__(self, rewards: dict[str, tuple[RewardFn, float]]):
        if not rewards:
            raise ValueError("WeightedRewards needs at least one reward function")
        self.rewards = rewards

    def __call__(self, videos, prompts, metadata=None):
        total, info = None, {}
        for name, (function, weight) in self.rewards.items():
            scores, details = function(videos, prompts, metadata)
            scores = np.asarray(scores, dtype=np.float32)
            info[name] = {"scores": scores, **details}
            total = weight * scores if total is None else total + weight * scores
        return total, info
