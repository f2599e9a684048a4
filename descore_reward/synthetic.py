"""Synthetic videos of simple scenes: a coloured shape that moves in a direction or stays still.

Deterministic and small, written as real MP4 files, so the demo, the tests and the benchmarks run on
decoded video without downloading anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}


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
    radius = min(height, width) // 6
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
