"""DeScore: think-then-score video reward model. See README.md."""

from .modeling import Comparison, DeScoreConfig, DeScoreModel, ScoreResult
from .prompts import DIMENSIONS, ParsedCoT, format_cot, instruction, parse_cot
from .video import Video, VideoInputError, VideoSampling, load_video

__version__ = "0.1.0"
__all__ = [
    "DIMENSIONS",
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
