import json

import pytest

from descore_reward.prompts import format_cot
from descore_reward.rollout_rewards import (
    RolloutRewardConfig,
    format_reward,
    length_reward,
    quality_reward,
    rollout_reward,
)

TRUTH = {"object": 5, "dynamics": 4, "environment": 3, "style": 2, "camera_movement": 1}


def test_format_reward_edge_cases():
    assert format_reward(format_cot("The object is right.", TRUTH)) == 1.0
    assert format_reward("") == 0.0
    assert format_reward(json.dumps(TRUTH)) == 0.0  # no reasoning before the JSON
    missing = {k: v for k, v in TRUTH.items() if k != "style"}
    assert format_reward("Reasoning. " + json.dumps(missing)) == 0.0
    assert format_reward("Reasoning. " + json.dumps({**TRUTH, "style": 7})) == 0.0
    assert format_reward("Reasoning. " + json.dumps({**TRUTH, "style": 0})) == 0.0
    assert format_reward(format_cot("Reasoning.", TRUTH) + " and a postscript") == 0.0


def test_quality_reward():
    assert quality_reward(format_cot("r", TRUTH), TRUTH) == 1.0
    opposite = {k: 6 - v for k, v in TRUTH.items()}  # distances 4, 2, 0, 2, 4 -> mean 2.4 of 4
    assert quality_reward(format_cot("r", opposite), TRUTH) == pytest.approx(1 - 12 / 20)
    assert quality_reward("no scores at all", TRUTH) == 0.0
    assert quality_reward("", TRUTH) == 0.0


def test_length_reward_is_piecewise():
    config = RolloutRewardConfig(minimum=10, band_low=20, band_high=40, decay=20)
    values = {n: length_reward(n, config) for n in (0, 9, 10, 15, 20, 30, 40, 50, 60, 100)}
    assert values == {0: 0.0, 9: 0.0, 10: 0.0, 15: 0.5, 20: 1.0, 30: 1.0, 40: 1.0, 50: 0.5, 60: 0.0, 100: 0.0}


def test_weighted_total():
    config = RolloutRewardConfig(format_weight=2.0, quality_weight=1.0, length_weight=0.5)
    total, terms = rollout_reward(format_cot("r", TRUTH), 100, TRUTH, config)
    assert terms == {"format": 1.0, "quality": 1.0, "length": 1.0} and total == pytest.approx(3.5)
    total, terms = rollout_reward("", 0, TRUTH, config)
    assert total == 0.0 and terms == {"format": 0.0, "quality": 0.0, "length": 0.0}
