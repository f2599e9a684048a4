"""Shared fixtures: a tiny random Qwen3-VL DeScore (real classes, offline tokenizer, real processor),
synthetic MP4 files, and the real videos of ../shared/data/real_videos/. Later test modules reuse these."""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers

from descore_reward.modeling import DeScoreConfig, DeScoreModel
from descore_reward.synthetic import Scene, render, write_mp4
from descore_reward.tiny import build_tiny_backbone
from descore_reward.video import VideoSampling

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

REAL_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_videos"
TINY_SAMPLING = VideoSampling(fps=4.0, max_pixels_per_frame=64 * 64, max_total_pixels=64 * 64 * 16)


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen3-VL saved with its processor, loadable by `from_pretrained`."""
    path = tmp_path_factory.mktemp("tiny") / "backbone"
    build_tiny_backbone(path, seed=0)
    return path


@pytest.fixture
def make_model(tiny_backbone_dir):
    """Factory for fresh tiny DeScore models (each test may train or mutate its own)."""

    def make(seed: int = 0, **config) -> DeScoreModel:
        return DeScoreModel.from_backbone(tiny_backbone_dir, DeScoreConfig(sampling=TINY_SAMPLING, **config), seed=seed)

    return make


@pytest.fixture(scope="module")
def tiny_model(tiny_backbone_dir) -> DeScoreModel:
    """One shared tiny DeScore model for read-only tests."""
    return DeScoreModel.from_backbone(tiny_backbone_dir, DeScoreConfig(sampling=TINY_SAMPLING), seed=0)


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory) -> list[Path]:
    """Three real MP4 files of simple scenes (16 frames, 64x64, 8 fps)."""
    folder = tmp_path_factory.mktemp("videos")
    scenes = [Scene("red", "square", "right"), Scene("blue", "circle", "still"), Scene("green", "square", "up")]
    return [write_mp4(render(scene), folder / f"{i}.mp4") for i, scene in enumerate(scenes)]


@pytest.fixture(scope="session")
def real_videos() -> list[Path]:
    """The six real AI-generated MP4 files of ../shared/data/real_videos/ (skipped when absent)."""
    paths = sorted((REAL_VIDEOS / "videos").glob("*.mp4"))
    if not paths:
        pytest.skip(f"real test videos not found under {REAL_VIDEOS}")
    return paths


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory) -> Path:
    """A tiny random WanPipeline (real diffusers classes) saved for `from_pretrained`."""
    from descore_reward.tiny import build_tiny_wan_pipeline

    path = tmp_path_factory.mktemp("wan") / "pipeline"
    build_tiny_wan_pipeline(path, seed=0)
    return path


def load_wan(path: Path):
    """A fresh WanPipeline from `path`, progress bars off."""
    from diffusers import WanPipeline

    pipeline = WanPipeline.from_pretrained(path)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`descore demo` run once as a user runs it (a subprocess): (output folder, completed process).

    The demo trains a tiny random DeScore with the stage-1 cold start; several tests read what it wrote.
    """
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "demo"
    command = [sys.executable, "-m", "descore_reward.cli", "demo", "--out", str(out)]
    return out, subprocess.run(command, capture_output=True, text=True)
