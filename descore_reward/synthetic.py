"""Synthetic videos of simple scenes: a coloured shape that moves in a direction or stays still.

Deterministic and small, written as real MP4 files, so the demo, the tests and the benchmarks run on
decoded video without downloading anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import PreferencePair, write_jsonl
from .rubrics import get_rubric

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
LAYOUTS = [(shape, direction) for shape in SHAPES for direction in DIRECTIONS]  # a scene but its colour


@dataclass(frozen=True)
class Scene:
    """A shape of a colour moving in a direction ("still" for none) on a grey background."""

    color: str = "red"
    shape: str = "square"
    direction: str = "right"

    def prompt(self) -> str:
        motion = "stays still" if self.direction == "still" else f"moves {self.direction}"
        return f"a {self.color} {self.shape} {motion} on a grey background, the camera stays still"


def render(scene: Scene, frames: int = 16, height: int = 64, width: int = 64) -> np.ndarray:
    """Frames `(T, H, W, 3)` uint8 of `scene`: the shape travels half the frame over the clip."""
    ys, xs = np.mgrid[0:height, 0:width]
    radius = min(height, width) // 4
    dx, dy = DIRECTIONS[scene.direction]
    video = np.full((frames, height, width, 3), 128, dtype=np.uint8)
    for t in range(frames):
        progress = t / max(frames - 1, 1) - 0.5
        cx = width / 2 + dx * progress * width / 2
        cy = height / 2 + dy * progress * height / 2
        if scene.shape == "circle":
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
        else:
            inside = (np.abs(xs - cx) <= radius) & (np.abs(ys - cy) <= radius)
        video[t][inside] = COLORS[scene.color]
    return video


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Encode `(T, H, W, 3)` uint8 frames as an H.264 MP4 with diffusers' `export_to_video`."""
    from diffusers.utils import export_to_video

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_to_video(list(frames.astype(np.float32) / 255.0), str(path), fps=fps)
    return path


def oracle_scores(shown: Scene, asked: Scene, rubric: str = "descore") -> dict[str, int | str]:
    """Sub-scores a perfect judge gives video `shown` for the prompt of `asked`, in `rubric`'s scale."""
    wrong = (shown.color != asked.color) + (shown.shape != asked.shape)
    moves_right = shown.direction == asked.direction
    if rubric == "likert5":
        return {
            "object": 5 - 2 * wrong,
            "dynamics": 5 if moves_right else 1,
            "environment": 5,
            "style": 5,
            "camera_movement": 5,
        }
    # The prompts ask for a still camera and a grey background, and say nothing of style.
    return {"subject": 2 - wrong, "dynamics": 2 if moves_right else 0, "camera": 2, "environment": 2, "style": "N/A"}


def oracle_overall(scores: dict[str, int | str]) -> float:
    """The `descore` rubric's overall score for sub-scores whose secondary dimensions are all 2 or N/A."""
    primaries = sorted((scores["subject"], scores["dynamics"]))
    return {(2, 2): 5.0, (1, 2): 3.5, (0, 2): 2.5, (0, 1): 2.2, (1, 1): 3.0, (0, 0): 1.5}[tuple(primaries)]


def quality(scores: dict[str, int | str], rubric: str = "descore") -> float:
    """How good a video is by its oracle sub-scores: the overall score, or the likert5 total."""
    return oracle_overall(scores) if rubric == "descore" else float(sum(scores.values()))


def oracle_cot(shown: Scene, asked: Scene, rubric: str = "descore") -> str:
    """A CoT a perfect judge writes: what the video shows against what the prompt asks, then its answer."""
    motion = "stays still" if shown.direction == "still" else f"moves {shown.direction}"
    asked_motion = "stay still" if asked.direction == "still" else f"move {asked.direction}"
    object_verdict = "as asked" if (shown.color, shown.shape) == (asked.color, asked.shape) else "which is wrong"
    motion_verdict = "as asked" if shown.direction == asked.direction else "which is wrong"
    reasoning = (
        f"The video shows a {shown.color} {shown.shape}; the prompt asks for a {asked.color} {asked.shape}, "
        f"{object_verdict}. The shape {motion}; it should {asked_motion}, {motion_verdict}. "
        "The grey background and the still camera match the prompt."
    )
    scores = oracle_scores(shown, asked, rubric)
    overall = oracle_overall(scores) if rubric == "descore" else None
    return get_rubric(rubric).format_answer(reasoning, scores, overall)


def _violate(scene: Scene, rng: np.random.Generator, violations: tuple[str, ...]) -> Scene:
    """`scene` with one or more of the attributes in `violations` ("color", "shape", "direction") changed."""
    choices = {"color": list(COLORS), "shape": list(SHAPES), "direction": list(DIRECTIONS)}
    while True:
        changed = {
            name: rng.choice(choices[name]) if rng.random() < 0.5 else getattr(scene, name) for name in violations
        }
        candidate = dataclasses.replace(scene, **changed)
        if candidate != scene:
            return candidate


def make_pairs(
    folder: str | Path,
    count: int,
    seed: int = 0,
    tie_rate: float = 0.1,
    violations: tuple[str, ...] = ("color", "shape", "direction"),
    frames: int = 16,
    size: int = 64,
    fps: int = 8,
    rubric: str = "descore",
    layouts: list[tuple[str, str]] | None = None,
) -> list[PreferencePair]:
    """`count` preference pairs with videos written under `folder/videos` (one MP4 per distinct scene).

    The winner shows the prompted scene, the loser changes one or more of the attributes named in
    `violations`; with probability `tie_rate` both are equally wrong (a tie). A and B order is random.
    Every pair carries oracle CoTs, sub-scores and per-dimension labels in `rubric`'s format and scale.
    `layouts`: the (shape, direction) of every prompted scene (default: all `LAYOUTS`); with colour-only
    violations both videos keep the layout, so sets of disjoint layouts share no prompt and no video.
    Deterministic in `seed`.
    """
    layouts = list(layouts or LAYOUTS)
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    written: dict[Scene, Path] = {}

    def video_of(scene: Scene) -> Path:
        if scene not in written:
            name = f"{scene.color}_{scene.shape}_{scene.direction}.mp4"
            written[scene] = write_mp4(render(scene, frames, size, size), folder / "videos" / name, fps=fps)
        return written[scene]

    pairs = []
    for index in range(count):
        shape, direction = layouts[rng.integers(len(layouts))]
        asked = Scene(rng.choice(list(COLORS)), shape, direction)
        if rng.random() < tie_rate:
            first = _violate(asked, rng, violations)
            second = _violate(asked, rng, violations)
            while second == first or oracle_scores(second, asked, rubric) != oracle_scores(first, asked, rubric):
                second = _violate(asked, rng, violations)  # a different, equally wrong video
            shown = [first, second]
        else:
            shown = [asked, _violate(asked, rng, violations)]
            if rng.random() < 0.5:
                shown.reverse()
        scores = [oracle_scores(scene, asked, rubric) for scene in shown]
        totals = [quality(s, rubric) for s in scores]
        label = "tie" if totals[0] == totals[1] else ("A" if totals[0] > totals[1] else "B")
        dimension_labels = {
            d: "tie" if scores[0][d] == scores[1][d] else ("A" if scores[0][d] > scores[1][d] else "B")
            for d in scores[0]
            if scores[0][d] != "N/A"
        }
        pairs.append(
            PreferencePair(
                id=f"synthetic-{seed}-{index:05d}",
                prompt=asked.prompt(),
                video_a=video_of(shown[0]),
                video_b=video_of(shown[1]),
                label=label,
                dimension_labels=dimension_labels,
                cot_a=oracle_cot(shown[0], asked, rubric),
                cot_b=oracle_cot(shown[1], asked, rubric),
                scores_a=scores[0],
                scores_b=scores[1],
                source=f"synthetic:{index}",
            )
        )
    return pairs


def make_dataset(folder: str | Path, count: int, seed: int = 0, name: str = "pairs.jsonl", **options) -> Path:
    """Write `make_pairs` as this project's JSONL under `folder`; returns the JSONL path."""
    pairs = make_pairs(folder, count, seed, **options)
    path = Path(folder) / name
    write_jsonl(pairs, path)
    return path
