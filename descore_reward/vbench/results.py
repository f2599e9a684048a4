"""VBench results for the paper's comparison: reading and writing `{name}_eval_results.json`, the
paper's numbers, and gains over a baseline with paired bootstrap intervals.

A results file has VBench's shape, `{dimension: [aggregate, [{"video_path", "video_results"}, ...]]}`,
whether VBench (`examples/vbench/evaluate.py`) or the quick-look evaluator (`video_metrics.py`) wrote
it. Per-video results are numbers, or booleans for dynamic degree (is the video dynamic); imaging
quality's per-video values are on MUSIQ's 0-100 scale, its aggregate divided by 100. Videos are
named `{prompt}-{i}.mp4` (VBench's standard mode), so two runs pair video by video and prompt by prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import DeScoreInputError

# The five VBench dimensions of the paper's table, in its order.
VBENCH_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "aesthetic_quality",
    "imaging_quality",
    "dynamic_degree",
)
# Per-video values are on this scale times the aggregate's.
PER_VIDEO_SCALE = {"imaging_quality": 100.0}
# The paper's table (Wan-2.1-T2V-1.3B; REFERENCE.md section 1).
PAPER = {
    "baseline": dict(zip(VBENCH_DIMENSIONS, (0.951, 0.961, 0.547, 0.669, 0.527))),
    "grpo": dict(zip(VBENCH_DIMENSIONS, (0.969, 0.973, 0.645, 0.706, 0.541))),
    "flow_dpo": dict(zip(VBENCH_DIMENSIONS, (0.969, 0.972, 0.615, 0.700, 0.542))),
}


@dataclass
class RunResults:
    """One run's results: `aggregates[dimension]` and `videos[dimension][file name]`, both on the
    aggregate's scale (a dynamic video counts 1.0)."""

    name: str
    aggregates: dict[str, float]
    videos: dict[str, dict[str, float]]


def results_path(results_dir: str | Path, name: str) -> Path:
    """Where VBench writes run `name`'s results."""
    return Path(results_dir) / f"{name}_eval_results.json"


def read_results(path: str | Path, name: str | None = None) -> RunResults:
    """Read a VBench results file; errors name the file and the dimension that is not as expected."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DeScoreInputError(f"{path}: not a VBench results file (invalid JSON: {error})") from None
    if not isinstance(raw, dict) or not raw:
        raise DeScoreInputError(f"{path}: expected {{dimension: [aggregate, per-video results]}}")
    aggregates, videos = {}, {}
    for dimension, entry in raw.items():
        try:
            aggregate, rows = entry
            scale = PER_VIDEO_SCALE.get(dimension, 1.0)
            videos[dimension] = {Path(row["video_path"]).name: float(row["video_results"]) / scale for row in rows}
            aggregates[dimension] = float(aggregate)
        except (TypeError, ValueError, KeyError):
            raise DeScoreInputError(
                f"{path}: dimension {dimension!r}: expected [aggregate, [{{'video_path', 'video_results'}}, ...]]"
            ) from None
    return RunResults(name or path.name.removesuffix("_eval_results.json"), aggregates, videos)


def write_results(path: str | Path, videos: dict[str, dict[str, float]]) -> Path:
    """Write per-video results `videos[dimension][video path]` (on the aggregate's scale; dynamic
    degree as 0 or 1) as a VBench results file, atomically; aggregates are the means."""
    out = {}
    for dimension, values in videos.items():
        scale = PER_VIDEO_SCALE.get(dimension, 1.0)
        rows = [
            {"video_path": str(video), "video_results": bool(value) if dimension == "dynamic_degree" else value * scale}
            for video, value in values.items()
        ]
        out[dimension] = [float(np.mean(list(values.values()))), rows]
    atomic_write_text(Path(path), json.dumps(out, indent=2))
    return Path(path)


def prompt_of(video_name: str) -> str:
    """The prompt of a standard-mode file name `{prompt}-{i}.mp4`."""
    return re.sub(r"-\d+\.mp4$", "", video_name)


@dataclass(frozen=True)
class Gain:
    """A run's gain over the baseline on one dimension, over the videos both have, with its bootstrap
    interval (`low`, `high`) at `confidence`."""

    dimension: str
    run: str
    baseline_score: float
    run_score: float
    low: float
    high: float
    videos: int
    prompts: int
    confidence: float = 0.95

    @property
    def gain(self) -> float:
        return self.run_score - self.baseline_score

    @property
    def inside_noise(self) -> bool:
        """The interval holds 0: the data do not tell this gain from no gain."""
        return self.low <= 0.0 <= self.high


def bootstrap_gain(
    run: RunResults,
    baseline: RunResults,
    dimension: str,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Gain:
    """`run`'s gain over `baseline` on `dimension` with a paired bootstrap percentile interval: prompts
    are resampled with replacement (a prompt's videos are not independent draws) and both runs' videos
    of each drawn prompt enter the two means."""
    for results in (run, baseline):
        if dimension not in results.videos:
            raise DeScoreInputError(f"run {results.name!r} has no {dimension!r} results")
    shared = sorted(set(run.videos[dimension]) & set(baseline.videos[dimension]))
    if not shared:
        raise DeScoreInputError(
            f"runs {run.name!r} and {baseline.name!r} share no {dimension!r} videos (compare file names)"
        )
    prompts = sorted({prompt_of(video) for video in shared})
    index = {prompt: i for i, prompt in enumerate(prompts)}
    which = np.array([index[prompt_of(video)] for video in shared])
    differences = np.array([run.videos[dimension][v] - baseline.videos[dimension][v] for v in shared])
    # Per prompt: the sum of its videos' differences and their count; a resample adds up drawn prompts.
    sums = np.bincount(which, weights=differences, minlength=len(prompts))
    counts = np.bincount(which, minlength=len(prompts))
    draws = np.random.default_rng(seed).integers(0, len(prompts), size=(resamples, len(prompts)))
    gains = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(gains, [tail, 100 - tail])
    baseline_score = float(np.mean([baseline.videos[dimension][v] for v in shared]))
    run_score = float(np.mean([run.videos[dimension][v] for v in shared]))
    return Gain(
        dimension, run.name, baseline_score, run_score, float(low), float(high), len(shared), len(prompts), confidence
    )


def compare(runs: dict[str, RunResults], baseline: str = "baseline", resamples: int = 10_000, seed: int = 0) -> dict:
    """The comparison the notebook shows, JSON-ready: for every run and dimension, its score (the
    results file's aggregate), the paper's (None where the paper has no such row) and, for runs other
    than `baseline`, the gain over it with a 95% paired bootstrap interval and whether 0 lies inside."""
    if baseline not in runs:
        raise DeScoreInputError(f"no results for the baseline run {baseline!r}; have {sorted(runs)}")
    table = {}
    for name, results in runs.items():
        row = {}
        for dimension in VBENCH_DIMENSIONS:
            if dimension not in results.aggregates:
                continue
            cell = {"score": results.aggregates[dimension], "paper": PAPER.get(name, {}).get(dimension)}
            if name != baseline and dimension in runs[baseline].aggregates:
                gain = bootstrap_gain(results, runs[baseline], dimension, resamples, seed=seed)
                cell.update(
                    gain=gain.gain,
                    low=gain.low,
                    high=gain.high,
                    inside_noise=gain.inside_noise,
                    videos=gain.videos,
                    prompts=gain.prompts,
                )
                if cell["paper"] is not None:
                    cell["paper_gain"] = cell["paper"] - PAPER["baseline"][dimension]
            row[dimension] = cell
        table[name] = row
    return {"baseline": baseline, "dimensions": list(VBENCH_DIMENSIONS), "runs": table}


def comparison_markdown(comparison: dict) -> str:
    """Two Markdown tables: scores beside the paper's, and gains over the baseline with their intervals
    (a gain whose interval holds 0 is marked "noise")."""
    dimensions = comparison["dimensions"]
    header = "| run | " + " | ".join(d.replace("_", " ") for d in dimensions) + " |"
    rule = "|---" * (len(dimensions) + 1) + "|"
    scores, gains = [header, rule], [header, rule]
    for name, row in comparison["runs"].items():
        cells = []
        for dimension in dimensions:
            cell = row.get(dimension)
            if cell is None:
                cells.append("-")
            else:
                paper = f" ({cell['paper']:.3f})" if cell["paper"] is not None else ""
                cells.append(f"{cell['score']:.3f}{paper}")
        scores.append(f"| {name} | " + " | ".join(cells) + " |")
        if name == comparison["baseline"]:
            continue
        cells = []
        for dimension in dimensions:
            cell = row.get(dimension, {})
            if "gain" not in cell:
                cells.append("-")
                continue
            noise = " noise" if cell["inside_noise"] else ""
            cells.append(f"{cell['gain']:+.3f} [{cell['low']:+.3f}, {cell['high']:+.3f}]{noise}")
        gains.append(f"| {name} | " + " | ".join(cells) + " |")
    return (
        "Scores (the paper's in brackets)\n\n"
        + "\n".join(scores)
        + f"\n\nGain over {comparison['baseline']} [95% paired bootstrap interval over prompts]\n\n"
        + "\n".join(gains)
        + "\n"
    )
