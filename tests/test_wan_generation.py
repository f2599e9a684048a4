"""The VBench video generator on the real diffusers Wan classes at toy size: prompts read from
VBench's file format, `{prompt}-{i}.mp4` files at 128 px (VBench's motion metric needs at least
that), a resumed run that regenerates nothing, and best-of-N keeping the candidate the reward ranks
highest."""

import json

import pytest
import torch

from descore_reward.video import VideoSampling, load_video
from descore_reward.wan.generation import (
    MANIFEST,
    GenerationSettings,
    generate_videos,
    read_vbench_prompts,
    video_path,
)

from .conftest import load_wan

SETTINGS = dict(height=128, width=128, num_frames=5, num_inference_steps=2, samples=2, fps=16)
FULL_INFO = [
    {"prompt_en": "a red square", "dimension": ["subject_consistency", "dynamic_degree"]},
    {"prompt_en": "a blue circle", "dimension": ["color"]},
    {"prompt_en": "a green square", "dimension": ["aesthetic_quality", "imaging_quality"]},
    {"prompt_en": "a red square", "dimension": ["background_consistency"]},
]


def test_prompts_of_the_chosen_dimensions_once_each(tmp_path):
    path = tmp_path / "VBench_full_info.json"
    path.write_text(json.dumps(FULL_INFO))
    assert read_vbench_prompts(path) == ["a red square", "a green square"]
    assert read_vbench_prompts(path, ["color"]) == ["a blue circle"]
    with pytest.raises(ValueError, match=r"no prompts for dimensions \['motion'\]"):
        read_vbench_prompts(path, ["motion"])
    with pytest.raises(ValueError, match="a file name cannot hold '/'"):
        video_path(tmp_path, "a cat / a dog", 0)


def test_generates_vbench_files_and_resumes_without_regenerating(tiny_wan_dir, tmp_path):
    settings = GenerationSettings(**SETTINGS)
    prompts = ["a red square", "a blue circle"]
    first = generate_videos(load_wan(tiny_wan_dir), prompts, tmp_path, settings, stop_after=3)
    written = {path: path.stat().st_mtime_ns for path in first if path.exists()}
    assert len(written) == 3, "interrupted after three videos"
    paths = generate_videos(load_wan(tiny_wan_dir), prompts, tmp_path, settings)
    assert sorted(p.name for p in paths) == sorted(f"{p}-{i}.mp4" for p in prompts for i in range(2))
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in written.items()), "finished videos kept"
    assert not list(tmp_path.glob(".*tmp*")), "no staging files left"
    video = load_video(paths[0], VideoSampling(fps=1e6, max_pixels_per_frame=10**9, max_total_pixels=10**12))
    assert video.frames.shape == (5, 3, 128, 128) and video.metadata.fps == pytest.approx(16)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["settings"]["guidance_scale"] == 6.0 and len(manifest["videos"]) == 4
    assert len({tuple(v["seeds"]) for v in manifest["videos"]}) == 4, "every video its own seed"


def test_best_of_n_keeps_the_candidate_the_reward_ranks_highest(tiny_wan_dir, tmp_path):
    ranked = []

    def brightness(videos, prompts, metadata=None):
        scores = videos.float().mean(dim=(1, 2, 3, 4)).numpy()
        ranked.append(videos.clone())
        return scores, {}

    settings = GenerationSettings(**{**SETTINGS, "samples": 1, "best_of": 3})
    (path,) = generate_videos(load_wan(tiny_wan_dir), ["a red square"], tmp_path, settings, brightness)
    record = json.loads((tmp_path / "scores" / "a red square-0.json").read_text())
    assert len(record["scores"]) == 3 and record["kept"] == max(range(3), key=record["scores"].__getitem__)
    kept = load_video(path, VideoSampling(fps=1e6, max_pixels_per_frame=10**9, max_total_pixels=10**12)).frames
    distances = [(kept.float() / 255 - candidate).abs().mean() for candidate in ranked[0]]
    assert min(range(3), key=lambda i: distances[i]) == record["kept"], "the file is the kept candidate"
    with pytest.raises(ValueError, match="needs a reward_fn"):
        generate_videos(load_wan(tiny_wan_dir), ["a red square"], tmp_path / "x", settings)
    assert torch.isfinite(torch.tensor(record["scores"])).all()
