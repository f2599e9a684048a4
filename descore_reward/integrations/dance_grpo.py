"""DeScore where DanceGRPO expects VideoAlign's inferencer.

DanceGRPO's HunyuanVideo and SkyReels scripts write each sample to an MP4 file and call
`inferencer.reward([path], [caption], use_norm=True)`, then read `[0]["VQ"]` and `[0]["MQ"]`.
`VideoAlignStyleInferencer` answers that call with the DeScore reward under every key VideoAlign
returns (`VQ`, `MQ`, `TA`, `Overall`): DeScore has one reward, so each key holds the same value, and
a script that weights VQ and MQ advantages trains on the DeScore advantage scaled by the sum of the
weights. Pass it where the script builds its inferencer::

    from descore_reward.integrations.dance_grpo import VideoAlignStyleInferencer
    inferencer = VideoAlignStyleInferencer("path/to/descore", device=device)

DanceGRPO wraps the reward call in `except Exception` and turns any error into a reward of -1.0
without a word, and -1.0 need not be low on DeScore's scale. So this inferencer handles failures
itself: every failure (a bad file, the model running out of memory) is logged with its cause and
counted (`failures`), and the video gets a reward below every reward this inferencer has returned,
by a margin of their whole range (`fill_value="below"`; a number fixes it instead), so a failed
video is never rewarded in its group. With `raise_errors=True` a failure raises `RewardFailure`, a
`BaseException`, which their `except Exception` does not catch: the loop stops with the cause.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from collections.abc import Sequence

import torch

from ..errors import DeScoreInputError
from ..modeling import DeScoreModel
from .reward import DeScoreReward

logger = logging.getLogger(__name__)
VIDEOALIGN_KEYS = ("VQ", "MQ", "TA", "Overall")
HISTORY = 4096  # rewards remembered to place a failed video's reward below them


class RewardFailure(BaseException):
    """A video could not be scored and `raise_errors` is set. A `BaseException`, like `KeyboardInterrupt`,
    so that a training loop's `except Exception` cannot turn it into a reward."""


class VideoAlignStyleInferencer:
    """`reward(video_paths, prompts, fps=None, num_frames=None, max_pixels=None, use_norm=True)` ->
    one dict per video with `VQ`, `MQ`, `TA` and `Overall`, each the DeScore reward.

    fps: frames sampled per second of video (VideoAlign's meaning; default the model's 2).
    num_frames: sample this many frames (fewer when the video has fewer) instead of by fps, rounded to
        an even count as VideoAlign rounds it; giving both is an error, as in VideoAlign.
    max_pixels: per-frame pixel cap, at most the model's own.
    use_norm: accepted for compatibility; DeScore rewards are used as the head gives them.
    raise_errors / fill_value: see the module docstring; `failures` counts the videos that failed.
    """

    def __init__(
        self,
        model: str | os.PathLike | DeScoreModel | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        think: bool = False,
        raise_errors: bool = False,
        fill_value: float | str = "below",
        engine: str = "hf",
        server: str | None = None,
    ):
        if fill_value != "below" and not isinstance(fill_value, (int, float)):
            raise DeScoreInputError(f'fill_value must be "below" or a number, got {fill_value!r}')
        self.reward_fn = DeScoreReward(
            model, think=think, device=device, dtype=dtype, on_error="raise", engine=engine, server=server
        )
        self.raise_errors, self.fill_value = raise_errors, fill_value
        self.failures = 0
        self._history: collections.deque[float] = collections.deque(maxlen=HISTORY)

    def reward(
        self,
        video_paths: Sequence[str | os.PathLike],
        prompts: Sequence[str],
        fps: float | None = None,
        num_frames: int | None = None,
        max_pixels: int | None = None,
        use_norm: bool = True,
    ) -> list[dict[str, float]]:
        if fps is not None and num_frames is not None:
            raise DeScoreInputError("fps and num_frames: give one of them (VideoAlign refuses both too)")
        sampling = self.reward_fn.sampling
        if fps is not None:
            sampling = dataclasses.replace(sampling, fps=fps)
        if num_frames is not None:
            count = max(2, 2 * round(num_frames / 2))  # VideoAlign's frame counts are even
            sampling = sampling.spread(count)
        if max_pixels is not None:
            sampling = dataclasses.replace(
                sampling, max_pixels_per_frame=min(max_pixels, sampling.max_pixels_per_frame)
            )
        scores = []
        for path, prompt in zip(video_paths, prompts, strict=True):  # one failure costs one video
            try:
                score = float(self.reward_fn.score([path], [prompt], sampling)[0][0])
            except Exception as error:  # noqa: BLE001 - any failure is logged, counted, never rewarded
                score = self._failed(path, prompt, error)
            else:
                self._history.append(score)
            scores.append(score)
        return [dict.fromkeys(VIDEOALIGN_KEYS, score) for score in scores]

    def _failed(self, path, prompt: str, error: Exception) -> float:
        self.failures += 1
        cause = f"{type(error).__name__}: {error}"
        if self.raise_errors:
            raise RewardFailure(f"DeScore could not score {path}: {cause}") from error
        value = self.fill_value if self.fill_value != "below" else self._below(prompt)
        logger.warning("DeScore could not score %s (%s); reward %.4f (failure %d)", path, cause, value, self.failures)
        return value

    def _below(self, prompt: str) -> float:
        """A reward below every one returned so far by their range (at least 1). With none yet, a grey
        video of the prompt gives the scale."""
        if not self._history:
            grey = torch.full((1, 4, 3, 64, 64), 0.5)
            self._history.append(float(self.reward_fn(grey, [prompt])[0][0]))
        low, high = min(self._history), max(self._history)
        return low - max(1.0, high - low)
