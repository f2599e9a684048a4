"""DeScore inside Flow-GRPO (`flow_grpo/rewards.py`, `scripts/train_wan2_1.py`) without editing their files.

Flow-GRPO builds its reward as `multi_score(device, {name: weight})` from a dictionary of factories
local to that function, so a new name cannot be added from outside. `register()` wraps their
`multi_score` so that `"descore"` (and anything in `SCORE_FACTORIES`) is understood and every other
name still goes to their own code. In a training script, before the rewards are built::

    from descore_reward.integrations.flow_grpo import register
    register()                                   # DESCORE_MODEL=/path/to/descore in the environment
    # config.reward_fn = {"descore": 1.0}, or {"descore": 1.0, "pickscore": 0.5}

The train and eval rewards that the script builds share one loaded model (`shared_model`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from .reward import DeScoreReward

FLOW_GRPO_REWARDS = "flow_grpo.rewards"


def descore_score(device: str | torch.device, think: bool = False) -> Callable:
    """A score-function factory in Flow-GRPO's shape: `descore_score(device)` returns
    `fn(images, prompts, metadata) -> (scores, info)`, images `(B, T, C, H, W)` floats in [0, 1].
    The checkpoint is `DESCORE_MODEL`'s; on CUDA it loads in bf16."""
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else None
    reward = DeScoreReward(think=think, device=device, dtype=dtype)

    def score(images, prompts, metadata, *args, **kwargs):
        return reward(images, prompts, metadata)

    return score


SCORE_FACTORIES: dict[str, Callable] = {"descore": descore_score}


def multi_score(device, score_dict: dict[str, float], fallback: Callable | None = None) -> Callable:
    """Flow-GRPO's `multi_score` contract with DeScore added: returns
    `fn(images, prompts, metadata, ref_images=None, only_strict=True) -> (details, {})`, where
    `details[name]` holds each reward's raw scores and `details["avg"]` their weighted sum. Names not in
    `SCORE_FACTORIES` go to `fallback` (Flow-GRPO's own `multi_score`)."""
    ours = {name: weight for name, weight in score_dict.items() if name in SCORE_FACTORIES}
    theirs = {name: weight for name, weight in score_dict.items() if name not in ours}
    if theirs and fallback is None:
        raise ValueError(f"rewards {sorted(theirs)} are not DeScore's; pass Flow-GRPO's multi_score as fallback")
    their_fn = fallback(device, theirs) if theirs else None
    our_fns = {name: SCORE_FACTORIES[name](device) for name in ours}

    def score(images, prompts, metadata, ref_images=None, only_strict=True):
        details, total = {}, None
        if their_fn is not None:
            theirs_details, _ = their_fn(images, prompts, metadata, ref_images=ref_images, only_strict=only_strict)
            total = list(theirs_details.pop("avg"))
            details.update(theirs_details)
        for name, weight in ours.items():
            scores, _ = our_fns[name](images, prompts, metadata)
            details[name] = [float(value) for value in scores]
            weighted = [weight * value for value in details[name]]
            total = weighted if total is None else [a + b for a, b in zip(total, weighted, strict=True)]
        details["avg"] = total
        return details, {}

    return score


def register(module=None) -> None:
    """Make `flow_grpo.rewards.multi_score` understand `"descore"`; their other rewards are unchanged.
    `module` is the rewards module (default: import `flow_grpo.rewards`). Calling it twice is harmless."""
    module = module or importlib.import_module(FLOW_GRPO_REWARDS)
    original = module.multi_score
    if getattr(original, "descore_registered", False):
        return

    def multi_score_with_descore(device, score_dict):
        return multi_score(device, score_dict, fallback=original)

    multi_score_with_descore.descore_registered = True
    module.multi_score = multi_score_with_descore
