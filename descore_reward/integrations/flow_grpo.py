"""DeScore inside Flow-GRPO (`flow_grpo/rewards.py`, `scripts/train_wan2_1.py`) without editing their files.

Flow-GRPO builds its reward as `multi_score(device, {name: weight})` from a dictionary of factories
local to that function, so a new name cannot be added from outside. `register()` wraps their
`multi_score` so that DeScore's names are understood and every other name still goes to their own
code. In a training script, before the rewards are built::

    from descore_reward.integrations.flow_grpo import register
    register()                                   # DESCORE_MODEL=/path/to/descore in the environment
    # config.reward_fn = {"descore": 1.0}, or {"descore": 1.0, "pickscore": 0.5}

Names: `descore` (fast mode, or think mode with `DESCORE_THINK=1`), `descore_think` (think mode), and
`descore_<dimension>` for each of the rubric's sub-scores (`descore_subject`, `descore_dynamics`, ...:
the think-mode answer's 2 / 1 / 0, "N/A" counted as 2 as the rubric's overall rule does, an answer
without it 0), so they are logged and weighted like Flow-GRPO's other rewards. Think-mode names share
one CoT per video. Everything else that `DeScoreReward` takes comes from the environment, since
Flow-GRPO's config holds only names and weights (`ENVIRONMENT`): `DESCORE_MODEL`, `DESCORE_THINK`,
`DESCORE_ON_ERROR`, `DESCORE_FILL_VALUE`, `DESCORE_BATCH_SIZE`, `DESCORE_DTYPE`,
`DESCORE_MAX_NEW_TOKENS`, `DESCORE_ENGINE` (`vllm` for think mode at scale), `DESCORE_SERVER` (a
`descore serve` URL instead of `DESCORE_MODEL`). The train and eval rewards share one loaded model.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import torch

from ..errors import DeScoreInputError
from ..rubrics import NOT_APPLICABLE
from .reward import DeScoreReward

FLOW_GRPO_REWARDS = "flow_grpo.rewards"
ENVIRONMENT = {  # variable -> (DeScoreReward argument, parser)
    "DESCORE_THINK": ("think", lambda text: {"1": True, "0": False, "true": True, "false": False}[text.lower()]),
    "DESCORE_ON_ERROR": ("on_error", str),
    "DESCORE_FILL_VALUE": ("fill_value", float),
    "DESCORE_BATCH_SIZE": ("batch_size", int),
    "DESCORE_DTYPE": ("dtype", lambda text: {"bfloat16": torch.bfloat16, "float32": torch.float32}[text]),
    "DESCORE_MAX_NEW_TOKENS": ("max_new_tokens", int),
    "DESCORE_ENGINE": ("engine", str),
    "DESCORE_SERVER": ("server", str),
}


def settings_from_environment(device: str | torch.device) -> dict:
    """`DeScoreReward` keyword arguments from the `DESCORE_*` variables (bf16 on CUDA unless
    `DESCORE_DTYPE` says otherwise); a bad value is a `DeScoreInputError` naming the variable."""
    settings = {"device": device, "dtype": torch.bfloat16 if torch.device(device).type == "cuda" else None}
    for variable, (argument, parse) in ENVIRONMENT.items():
        text = os.environ.get(variable)
        if text is None or text == "":
            continue
        try:
            settings[argument] = parse(text)
        except (KeyError, ValueError):
            raise DeScoreInputError(f"{variable}={text!r}: not a valid {argument} for DeScoreReward") from None
    return settings


def descore_score(device: str | torch.device, think: bool | None = None) -> Callable:
    """A score-function factory in Flow-GRPO's shape: `descore_score(device)` returns
    `fn(images, prompts, metadata) -> (scores, info)`, images `(B, T, C, H, W)` floats in [0, 1],
    with the `DESCORE_*` settings (`think` given here wins over `DESCORE_THINK`)."""
    settings = settings_from_environment(device)
    if think is not None:
        settings["think"] = think
    reward = DeScoreReward(**settings)

    def score(images, prompts, metadata, *args, **kwargs):
        return reward(images, prompts, metadata)

    return score


def sub_score_value(value) -> float:
    """A think-mode sub-score as a reward: 2 / 1 / 0 as written, "N/A" as 2, missing as 0."""
    if value == NOT_APPLICABLE:
        return 2.0
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def think_rewards(device: str | torch.device, names: list[str]) -> Callable:
    """One think-mode scoring for several names: `fn(images, prompts, metadata) -> {name: scores}` with
    `descore_think` the reward and `descore_<dimension>` the answer's sub-score."""
    settings = {**settings_from_environment(device), "think": True}
    reward = DeScoreReward(**settings)
    dimensions = reward.model.rubric.dimensions
    unknown = [n for n in names if n != "descore_think" and n.removeprefix("descore_") not in dimensions]
    if unknown:
        expected = ["descore_think", *(f"descore_{d}" for d in dimensions)]
        raise DeScoreInputError(f"rewards {unknown}: this checkpoint's rubric has {expected}")

    def score(images, prompts, metadata):
        scores, info = reward(images, prompts, metadata)
        result = {}
        for name in names:
            if name == "descore_think":
                result[name] = [float(value) for value in scores]
            else:
                dimension = name.removeprefix("descore_")
                result[name] = [sub_score_value((subs or {}).get(dimension)) for subs in info["sub_scores"]]
        return result

    return score


def is_descore_name(name: str) -> bool:
    return name == "descore" or name.startswith("descore_")


def multi_score(device, score_dict: dict[str, float], fallback: Callable | None = None) -> Callable:
    """Flow-GRPO's `multi_score` contract with DeScore added: returns
    `fn(images, prompts, metadata, ref_images=None, only_strict=True) -> (details, {})`, where
    `details[name]` holds each reward's raw scores and `details["avg"]` their weighted sum. Names that
    are not DeScore's go to `fallback` (Flow-GRPO's own `multi_score`)."""
    ours = {name: weight for name, weight in score_dict.items() if is_descore_name(name)}
    theirs = {name: weight for name, weight in score_dict.items() if name not in ours}
    if theirs and fallback is None:
        raise DeScoreInputError(f"rewards {sorted(theirs)} are not DeScore's; pass Flow-GRPO's multi_score as fallback")
    their_fn = fallback(device, theirs) if theirs else None
    plain_fn = descore_score(device) if "descore" in ours else None
    thinking = [name for name in ours if name != "descore"]
    think_fn = think_rewards(device, thinking) if thinking else None

    def score(images, prompts, metadata, ref_images=None, only_strict=True):
        details, total = {}, None
        if their_fn is not None:
            theirs_details, _ = their_fn(images, prompts, metadata, ref_images=ref_images, only_strict=only_strict)
            total = list(theirs_details.pop("avg"))
            details.update(theirs_details)
        if plain_fn is not None:
            details["descore"] = [float(value) for value in plain_fn(images, prompts, metadata)[0]]
        if think_fn is not None:
            details.update(think_fn(images, prompts, metadata))
        for name, weight in ours.items():
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
