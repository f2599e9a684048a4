"""Adapters that expose DeScore to other frameworks' post-training loops.

- `reward`: `DeScoreReward` (Flow-GRPO's reward-function shape) and `WeightedRewards`;
- `flow_grpo`: `register()` adds `"descore"` to Flow-GRPO's `multi_score`;
- `dance_grpo`: `VideoAlignStyleInferencer` stands where DanceGRPO expects VideoAlign.

This library's own Wan trainers (Flow-DPO, GRPO) are in `descore_reward.wan`.
"""

from .reward import DeScoreReward, WeightedRewards, shared_model

__all__ = ["DeScoreReward", "WeightedRewards", "shared_model"]
