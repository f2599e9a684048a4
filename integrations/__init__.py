"""Adapters that expose DeScore to diffusion post-training loops; installed as `descore_reward.integrations`.

- `reward`: `DeScoreReward` (Flow-GRPO's reward-function shape) and `WeightedRewards`;
- `flow_grpo`: `register()` adds `"descore"` to Flow-GRPO's `multi_score`;
- `dance_grpo`: `VideoAlignStyleInferencer` stands where DanceGRPO expects VideoAlign;
- `flow_dpo`, `longcat_grpo`: this library's own Flow-DPO and GRPO trainers for Wan-2.1.
"""

from .reward import DeScoreReward, WeightedRewards, shared_model

__all__ = ["DeScoreReward", "WeightedRewards", "shared_model"]
