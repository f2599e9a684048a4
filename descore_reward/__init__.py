"""DeScore: think-then-score video reward model. See README.md."""

from .modeling import Comparison, DeScoreConfig, DeScoreModel, ScoreResult
from .prompts import DIMENSIONS, ParsedCoT, format_cot, instruction, parse_cot
from .video import Video, VideoInputError, VideoSampling, load_video

__version__ = "0.1.0"


def __getattr__(name: str):
    """`descore_reward.DeScoreReward`, imported on first use (it lives in `descore_reward.integrations`)."""
    if name in ("DeScoreReward", "WeightedRewards"):
        from . import integrations

        return getattr(integrations, name)
    raise AttributeError(f"module 'descore_reward' has no attribute {name!r}")


__all__ = [
    "DIMENSIONS",
    "DeScoreReward",
    "WeightedRewards",
    "Comparison",
    "DeScoreConfig",
    "DeScoreModel",
    "ParsedCoT",
    "ScoreResult",
    "Video",
    "VideoInputError",
    "VideoSampling",
    "format_cot",
    "instruction",
    "load_video",
    "parse_cot",
]
