"""Preference accuracy against hand-computed cases and against a plain loop that follows the
reference procedure step by step."""

import math

import numpy as np
import pytest

from descore_reward.evaluation.metrics import (
    accuracy_with_ties,
    accuracy_without_ties,
    bootstrap_interval,
    preference_metrics,
)


def reference_loop(h, m):
    """The reference procedure, literally: buckets updated one pair at a time in ascending |m|."""
    correct = sum(1 for hi, mi in zip(h, m) if hi != 0 and hi * mi > 0)
    best, threshold = -math.inf, None
    for hi, mi in sorted(zip(h, m), key=lambda pair: abs(pair[1])):
        if hi == 0:
            correct += 1  # a human tie leaves "model says non-tie" for "both tie"
        elif hi * mi > 0:
            correct -= 1  # an agreeing pair becomes a model tie
        if correct / len(h) > best:
            best, threshold = correct / len(h), abs(mi)
    return best, threshold


def by_definition(h, m):
    """Best accuracy over real thresholds, the no-tie state included (reference=False)."""
    best = (-1.0, None)
    for eps in [-math.inf] + sorted({abs(x) for x in m}):
        hits = sum((hi == 0 and abs(mi) <= eps) or (hi != 0 and abs(mi) > eps and hi * mi > 0) for hi, mi in zip(h, m))
        if hits / len(h) > best[0]:
            best = (hits / len(h), eps)
    return best


@pytest.mark.parametrize(
    "h, m, expected, threshold",
    [
        ([1, 0, -1, 0], [0.5, 0.5, 0.5, 0.1], 0.5, 0.1),  # ties among margins
        ([0, 1], [0.3, 0.3], 1.0, 0.3),  # equal |m| moved one by one, as the reference does
        ([0, 0, 0], [0.1, -0.2, 0.3], 1.0, 0.3),  # all human ties
        ([1, -1, 1, 1], [0.3, -0.1, -0.2, 0.4], 0.5, 0.1),  # no human ties: the no-tie state is never scored
        ([1], [0.5], 0.0, 0.5),  # one pair
        ([0, 1, -1], [0.05, 0.5, -0.7], 1.0, 0.05),  # the best threshold is the smallest margin
    ],
)
def test_hand_computed_reference_cases(h, m, expected, threshold):
    result = accuracy_with_ties(h, m)
    assert result.accuracy == pytest.approx(expected) and result.threshold == pytest.approx(threshold)


def test_threshold_consistent_variant():
    assert accuracy_with_ties([0, 1], [0.3, 0.3], reference=False).accuracy == pytest.approx(0.5)
    result = accuracy_with_ties([1, -1, 1, 1], [0.3, -0.1, -0.2, 0.4], reference=False)
    assert result.accuracy == pytest.approx(0.75) and result.threshold == -math.inf


def test_matches_the_procedure_on_random_data():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        h = rng.integers(-1, 2, n).tolist()
        m = np.round(rng.normal(size=n), 1).tolist()  # rounding makes equal |m| common
        result = accuracy_with_ties(h, m)
        assert (result.accuracy, result.threshold) == pytest.approx(reference_loop(h, m)), trial
        variant = accuracy_with_ties(h, m, reference=False)
        assert (variant.accuracy, variant.threshold) == pytest.approx(by_definition(h, m)), trial


def test_accuracy_without_ties():
    assert accuracy_without_ties([1, -1, 0, 1, 1], [0.3, -0.1, 9.0, -0.2, 0.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="every pair is a human tie"):
        accuracy_without_ties([0, 0], [0.1, 0.2])


@pytest.mark.parametrize(
    "h, m, message",
    [
        ([], [], "empty"),
        ([1, 0], [0.1], "differ in length"),
        ([1, 2], [0.1, 0.2], "must be -1, 0 or 1"),
        ([1, 0], [0.1, float("nan")], "pair 1 is NaN"),
    ],
)
def test_bad_input(h, m, message):
    with pytest.raises(ValueError, match=message):
        accuracy_with_ties(h, m)


def test_metrics_summary_and_bootstrap():
    rng = np.random.default_rng(1)
    h = rng.integers(-1, 2, 300)
    m = h * 0.5 + rng.normal(size=300)
    metrics = preference_metrics(h, m, bootstrap=200)
    low, high = metrics["accuracy_without_ties_ci95"]
    assert low < metrics["accuracy_without_ties"] < high and high - low < 0.2
    assert metrics["pairs"] == 300 and metrics["human_ties"] == int(np.sum(h == 0))
    assert bootstrap_interval(h, m, accuracy_without_ties, samples=50) == bootstrap_interval(
        h, m, accuracy_without_ties, samples=50
    )
    assert preference_metrics([0, 0], [0.1, 0.2])["accuracy_without_ties"] is None
