"""Rule-based rewards for stage-2 CoT rollouts: `R = w_f R_format + w_q R_quality + w_l R_length`.

The paper names the three terms; their exact forms were lost, so these are choices:

- format: 1 when the text is reasoning followed by a JSON object holding all five dimensions as
  integers 1..5, with nothing after it; else 0.
- quality: `1 - mean_d |s_pred[d] - s_true[d]| / 4` over the five dimensions, in [0, 1]; 0 when the
  scores cannot be parsed.
- length: in CoT tokens, 0 below `minimum`, rising linearly to 1 at `band_low`, 1 up to `band_high`,
  then falling linearly to 0 at `band_high + decay`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .prompts import DIMENSIONS, MAX_SCORE, MIN_SCORE, parse_cot


@dataclass(frozen=True)
class RolloutRewardConfig:
    """Weights of the three terms and the length band, in tokens (choices: the paper lost them)."""

    format_weight: float = 1.0
    quality_weight: float = 1.0
    length_weight: float = 0.5
    minimum: int = 16
    band_low: int = 64
    band_high: int = 384
    decay: int = 256


def format_reward(text: str) -> float:
    parsed = parse_cot(text)
    return float(parsed.scores is not None and bool(parsed.reasoning) and not parsed.trailing)


def quality_reward(text: str, truth: dict[str, int]) -> float:
    scores = parse_cot(text).scores
    if scores is None:
        return 0.0
    span = MAX_SCORE - MIN_SCORE
    return 1.0 - sum(abs(scores[d] - truth[d]) for d in DIMENSIONS) / (span * len(DIMENSIONS))


def length_reward(tokens: int, config: RolloutRewardConfig = RolloutRewardConfig()) -> float:
    if tokens < config.minimum:
        return 0.0
    if tokens < config.band_low:
        return (tokens - config.minimum) / max(config.band_low - config.minimum, 1)
    if tokens <= config.band_high:
        return 1.0
    return max(0.0, 1.0 - (tokens - config.band_high) / max(config.decay, 1))


def rollout_reward(
    text: str, tokens: int, truth: dict[str, int], config: RolloutRewardConfig = RolloutRewardConfig()
) -> tuple[float, dict[str, float]]:
    """The weighted total and each term, for one rollout of `tokens` CoT tokens."""
    terms = {
        "format": format_reward(text),
        "quality": quality_reward(text, truth),
        "length": length_reward(tokens, config),
    }
    total = (
        config.format_weight * terms["format"]
        + config.quality_weight * terms["quality"]
        + config.length_weight * terms["length"]
    )
    return total, terms
