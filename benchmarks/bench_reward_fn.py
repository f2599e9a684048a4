"""Reward-function overhead: 8 generated videos scored from tensors against the write-each-video-to-MP4,
then-score-the-files route that DanceGRPO takes with VideoAlign; same model, measured side by side.

Videos have the shape of Flow-GRPO's Wan-2.1-1.3B recipe (33 frames of 240x416, floats in [0, 1],
`output_type="pt"`); the model is the scoring benchmark's random Qwen3-VL, fast mode (no CoT).

    python benchmarks/bench_reward_fn.py [--device cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from bench_scoring import SIZES
from diffusers.utils import export_to_video

from descore_reward import DeScoreConfig, DeScoreModel, DeScoreReward, VideoSampling
from descore_reward.synthetic import Scene, render
from descore_reward.tiny import build_tiny_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    text, vision = SIZES["cpu"]
    with tempfile.TemporaryDirectory() as scratch:
        build_tiny_backbone(f"{scratch}/backbone", text=text, vision=vision)
        model = DeScoreModel.from_backbone(
            f"{scratch}/backbone", DeScoreConfig(sampling=VideoSampling()), device=args.device, seed=0
        )
    reward_fn = DeScoreReward(model, think=False, input_fps=16.0, batch_size=8)  # Wan's frames, 16 fps
    file_reward_fn = DeScoreReward(model, think=False, batch_size=8)  # files carry their own frame rate
    scenes = [
        Scene(c, s, d)
        for c, s, d in zip(
            ["red", "blue", "green", "yellow"] * 2, ["square", "circle"] * 4, ["left", "right", "up", "down"] * 2
        )
    ]
    videos = torch.stack([torch.from_numpy(render(s, frames=33, height=240, width=416)) for s in scenes])
    videos = videos.permute(0, 1, 4, 2, 3).float() / 255.0  # (B, T, C, H, W) in [0, 1], as WanPipeline "pt"
    prompts = [scene.prompt() for scene in scenes]

    def from_tensors():
        return reward_fn(videos, prompts)[0]

    def via_files():
        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for index, video in enumerate(videos):
                path = Path(folder) / f"{index}.mp4"
                export_to_video(list(video.permute(0, 2, 3, 1).numpy()), str(path), fps=16)
                paths.append(str(path))
            return file_reward_fn(paths, prompts)[0]

    from_tensors(), via_files()  # warm-up
    times = {"tensors": [], "mp4 files": []}
    for _ in range(args.repeats):
        for name, case in (("tensors", from_tensors), ("mp4 files", via_files)):
            start = time.perf_counter()
            scores = case()
            times[name].append(time.perf_counter() - start)
    t = {name: statistics.median(values) for name, values in times.items()}
    drift = float(np.max(np.abs(from_tensors() - via_files())))
    print(f"device {args.device}, 8 videos of 33x240x416, fast mode, {torch.get_num_threads()} threads")
    for name, value in t.items():
        print(f"  {name:10s} median {value:.3f} s  ({', '.join(f'{v:.3f}' for v in times[name])})")
    print(f"write-to-MP4-then-score / tensors: {t['mp4 files'] / t['tensors']:.2f}x the time")
    print(f"largest score difference from MP4 compression: {drift:.4f} (scores span {np.ptp(scores):.4f})")


if __name__ == "__main__":
    main()
