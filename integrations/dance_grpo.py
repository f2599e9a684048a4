"""DeScore where DanceGRPO expects VideoAlign's inferencer.

DanceGRPO's HunyuanVideo and SkyReels scripts write each sample to an MP4 file and call
`inferencer.reward([path], [caption], use_norm=True)`, then read `[0]["VQ"]` and `[0]["MQ"]`.
`VideoAlignStyleInferencer` answers that call with the DeScore reward under every key VideoAlign
returns (`VQ`, `MQ`, `TA`, `Overall`): DeScore has one reward, so each key holds the same value, and
a script that weights VQ and MQ advantages trains on the DeScore advantage scaled by the sum of the
weights. Pass it where the script builds its inferencer::

    from descore_reward.integrations.dance_grpo import VideoAlignStyleInferencer
    inferencer = VideoAlignStyleInferencer("path/to/descore", device=device)

DanceGRPO turns any exception in the reward into a reward of -1.0 without a message; set
`raise_errors=False` here (the default) and failures are logged as warnings and scored
`fill_value` (-1.0 by default), so they show in the log instead of vanishing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import torch

from ..modeling import DeScoreModel
from .reward import DeScoreReward

VIDEOALIGN_KEYS = ("VQ", "MQ", "TA", "Overall")


class VideoAlignStyleInferencer:
    """`reward(video_paths, prompts, fps=None, num_frames=None, max_pixels=None, use_norm=True)` ->
    one dict per video with `VQ`, `MQ`, `TA` and `Overall`, each the DeScore reward.

    fps: frames sampled per second of video (VideoAlign's meaning; default the model's 2).
    num_frames: sample exactly this many frames (fewer when the video has fewer) instead of by fps.
    max_pixels: per-frame pixel cap, at most the model's own.
    use_norm: accepted for compatibility; DeScore rewards are used as the head gives them.
    """

    def __init__(
        self,
        model: str | os.PathLike | DeScoreModel | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        think: bool = False,
        raise_errors: bool = False,
        fill_value: float = -1.0,
    ):
        on_error = "raise" if raise_errors else "fill"
        self.reward_fn = DeScoreReward(
            model, think=think, device=device, dtype=dtype, on_error=on_error, fill_value=fill_value
        )

    def reward(
        self,
        video_paths: Sequence[str | os.PathLike],
        prompts: Sequence[str],
        fps: float | None = None,
        num_frames: int | None = None,
        max_pixels: int | None = None,
        use_norm: bool = True,
    ) -> list[dict[str, float]]:
        sampling = self.reward_fn.sampling
        if fps is not None:
            sampling = dataclasses.replace(sampling, fps=fps)
        if num_frames is not None:
            sampling = dataclasses.replace(sampling, fps=1e6, min_frames=num_frames, max_frames=num_frames)
        if max_pixels is not None:
            sampling = dataclasses.replace(
                sampling, max_pixels_per_frame=min(max_pixels, sampling.max_pixels_per_frame)
            )
        scores, _ = self.reward_fn.score(list(video_paths), list(prompts), sampling)
        return [dict.fromkeys(VIDEOALIGN_KEYS, float(score)) for score in scores]
