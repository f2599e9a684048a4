"""`descore demo`: the whole think-then-score path offline on the CPU, on a tiny random model.

It builds a tiny random Qwen3-VL DeScore under OUT/model, writes a few MP4 files under OUT/videos,
scores them think-then-score and fast, prints each CoT, sub-scores and reward, and writes
OUT/scores.jsonl. A random backbone writes gibberish CoTs: the point is the machinery, end to end.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import transformers

from .atomic import atomic_write_text
from .modeling import DeScoreConfig, DeScoreModel
from .synthetic import Scene, render, write_mp4
from .tiny import build_tiny_backbone
from .video import VideoSampling

MARKER = "scores.jsonl"
DEMO_SAMPLING = VideoSampling(fps=4.0, max_pixels_per_frame=64 * 64, max_total_pixels=64 * 64 * 16)


def run(out: Path, seed: int = 0) -> list[dict]:
    """Run the demo into `out` (empty, new, or a previous demo's folder). Returns the score rows."""
    transformers.utils.logging.disable_progress_bar()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out}: exists, is not empty and holds no earlier demo ({MARKER}); choose another --out")
    prompt = Scene("red", "square", "right").prompt()
    scenes = [Scene("red", "square", "right"), Scene("red", "square", "left"), Scene("blue", "circle", "still")]
    videos = [
        write_mp4(render(scene, frames=16), out / "videos" / f"{i}_{scene.color}_{scene.shape}_{scene.direction}.mp4")
        for i, scene in enumerate(scenes)
    ]

    print(f"[1/3] building a tiny random Qwen3-VL DeScore model (seed {seed})")
    with tempfile.TemporaryDirectory() as scratch:
        build_tiny_backbone(Path(scratch) / "backbone", seed=seed)
        model = DeScoreModel.from_backbone(Path(scratch) / "backbone", DeScoreConfig(sampling=DEMO_SAMPLING), seed=seed)
        model.save_pretrained(out / "model", include_backbone=True)

    print(f"[2/3] scoring {len(videos)} videos for the prompt: {prompt!r}")
    thought = model.score(videos, prompt, think=True, max_new_tokens=32, seed=seed)
    fast = model.score(videos, prompt, think=False)
    rows = []
    for video, with_cot, without_cot in zip(videos, thought, fast, strict=True):
        print(f"\n  {video.name}")
        print(f"    CoT (random model, so gibberish): {with_cot.cot[:80]!r}")
        print(f"    sub-scores: {with_cot.scores}")
        print(f"    reward think-then-score: {with_cot.reward:+.4f}   fast (no CoT): {without_cot.reward:+.4f}")
        rows.append({**with_cot.to_dict(), "video": str(video), "reward_fast": without_cot.reward})

    atomic_write_text(out / MARKER, "".join(json.dumps(row) + "\n" for row in rows))
    print(f"\n[3/3] wrote {out / MARKER}; the model is in {out / 'model'}. Score your own files with:")
    print(f"  descore score {videos[0]} --prompt {prompt!r} --model {out / 'model'}")
    return rows
