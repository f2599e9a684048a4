"""Preference accuracy with and without ties (the VideoGen-RewardBench convention).

Human labels `h` are +1 (A preferred), -1 (B preferred) or 0 (tie); model margins are
`m = r(A) - r(B)`.

- Without ties: over pairs with `h != 0`, the fraction with `h * m > 0` (`m == 0` counts as wrong).
- With ties (tie calibration, Deutsch et al. 2023, arXiv 2305.14324): a threshold `eps` predicts a
  tie when `|m| <= eps`; accuracy is (agreeing non-tie pairs with `|m| > eps` + human ties with
  `|m| <= eps`) / N, maximised over `eps`. By default this follows the reference implementation
  exactly, so numbers compare with published ones: pairs are visited in ascending `|m|` (stable
  order), moved one at a time into the predicted-tie bucket with `eps = |m_i|`, and the best state
  is kept; the state with no predicted ties is never scored, and pairs of equal `|m|` are moved one
  by one. `reference=False` scores only real thresholds (equal `|m|` move together) and includes
  the no-tie state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DeScoreInputError


@dataclass(frozen=True)
class TieAccuracy:
    """Best tie-calibrated accuracy and the threshold `eps` that gives it (-inf: no ties predicted)."""

    accuracy: float
    threshold: float


def _check(labels: Sequence[int], margins: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(labels)
    m = np.asarray(margins, dtype=np.float64)
    if h.ndim != 1 or m.ndim != 1:
        raise DeScoreInputError(f"labels and margins must be 1-D, got shapes {h.shape} and {m.shape}")
    if len(h) != len(m):
        raise DeScoreInputError(f"labels and margins differ in length: {len(h)} vs {len(m)}")
    if len(h) == 0:
        raise DeScoreInputError("no pairs: labels and margins are empty")
    bad = ~np.isin(h, (-1, 0, 1))
    if bad.any():
        raise DeScoreInputError(f"labels must be -1, 0 or 1; pair {int(np.argmax(bad))} has {h[bad][0]!r}")
    if np.isnan(m).any():
        raise DeScoreInputError(f"margin of pair {int(np.argmax(np.isnan(m)))} is NaN")
    return h.astype(np.int64), m


def accuracy_without_ties(labels: Sequence[int], margins: Sequence[float]) -> float:
    """Fraction of non-tie pairs whose margin has the human label's sign."""
    h, m = _check(labels, margins)
    decided = h != 0
    if not decided.any():
        raise DeScoreInputError("accuracy without ties is undefined: every pair is a human tie")
    return float(np.mean(h[decided] * m[decided] > 0))


def accuracy_with_ties(labels: Sequence[int], margins: Sequence[float], reference: bool = True) -> TieAccuracy:
    """Best accuracy over tie thresholds, in O(N log N); see the module docstring."""
    h, m = _check(labels, margins)
    n = len(h)
    order = np.argsort(np.abs(m), kind="stable")
    h, m = h[order], m[order]
    # Moving pair i into the predicted-tie bucket gains a human tie, loses an agreeing pair.
    change = np.where(h == 0, 1, np.where(h * m > 0, -1, 0))
    correct = int(np.sum(h * m > 0)) + np.cumsum(change)  # correct count after moving pairs 0..i
    thresholds = np.abs(m)
    if not reference:
        last_of_value = np.append(thresholds[1:] != thresholds[:-1], True)
        correct, thresholds = correct[last_of_value], thresholds[last_of_value]
        correct = np.append(int(np.sum(h * m > 0)), correct)
        thresholds = np.append(-np.inf, thresholds)
    best = int(np.argmax(correct))  # the first best, as the reference keeps
    return TieAccuracy(accuracy=float(correct[best]) / n, threshold=float(thresholds[best]))


def bootstrap_interval(
    labels: Sequence[int],
    margins: Sequence[float],
    metric: Callable[[np.ndarray, np.ndarray], float],
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric(labels, margins)` over pairs resampled with replacement."""
    h, m = _check(labels, margins)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        index = rng.integers(0, len(h), len(h))
        try:
            values.append(metric(h[index], m[index]))
        except ValueError:  # a resample without non-tie pairs
            continue
    tail = (1.0 - level) / 2.0 * 100.0
    return float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))


def preference_metrics(
    labels: Sequence[int], margins: Sequence[float], bootstrap: int = 0, seed: int = 0
) -> dict[str, float | None]:
    """Both accuracies (None where undefined), the chosen threshold, counts, and optional 95% intervals."""
    h, m = _check(labels, margins)
    with_ties = accuracy_with_ties(h, m)
    metrics: dict[str, float | None] = {
        "pairs": len(h),
        "human_ties": int(np.sum(h == 0)),
        "accuracy_with_ties": with_ties.accuracy,
        "tie_threshold": with_ties.threshold,
        "accuracy_without_ties": accuracy_without_ties(h, m) if np.any(h != 0) else None,
    }
    if bootstrap:
        for name, metric in (
            ("with_ties", lambda a, b: accuracy_with_ties(a, b).accuracy),
            ("without_ties", accuracy_without_ties),
        ):
            if metrics[f"accuracy_{name}"] is not None:
                low, high = bootstrap_interval(h, m, metric, samples=bootstrap, seed=seed)
                metrics[f"accuracy_{name}_ci95"] = [low, high]
    return metrics
