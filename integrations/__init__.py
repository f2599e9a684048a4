"""Adapters that expose DeScore to diffusion post-training loops; installed as `descore_reward.integrations`."""

from .reward import DeScoreReward, WeightedRewards

__all__ = ["DeScoreReward", "WeightedRewards"]
