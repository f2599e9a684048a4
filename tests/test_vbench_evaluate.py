"""`examples/vbench/evaluate.py` run by VBench 0.1.5 itself, in its own environment, offline on random
weights of the real architectures (`tests/vbench/random_cache.py`), and the quick-look evaluator
(`descore_reward.vbench.quick_look`) checked against it video by video on the same weights.

The VBench environment is not the library's: these tests run where `DESCORE_VBENCH_PYTHON` names its
interpreter (`.ci/run` builds one, as `examples/vbench/requirements-vbench.txt` says) and are skipped
elsewhere. `DESCORE_VBENCH_CACHE` keeps the random weights between runs (default: a temporary folder).
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from descore_reward.synthetic import Scene, render, write_mp4
from descore_reward.vbench import results as vbench

ROOT = Path(__file__).parents[1]
PYTHON = os.environ.get("DESCORE_VBENCH_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PYTHON, reason="DESCORE_VBENCH_PYTHON does not name a VBench 0.1.5 environment"),
]
PROMPT = "a red square moving right"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    path = Path(os.environ.get("DESCORE_VBENCH_CACHE") or tmp_path_factory.mktemp("vbench-cache"))
    if not (path / "raft_model" / "models" / "raft-things.pth").exists():
        env = {**os.environ, "VBENCH_CACHE_DIR": str(path)}
        subprocess.run([PYTHON, str(ROOT / "tests" / "vbench" / "random_cache.py")], check=True, env=env)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A moving square and the same square held still, 16 frames at 128 px (VBench's motion metric
    returns NaN flow below 128 px), named as VBench's standard mode wants."""
    folder = tmp_path_factory.mktemp("videos")
    frames = render(Scene("red", "square", "right"), frames=16, height=128, width=128)
    write_mp4(frames, folder / f"{PROMPT}-0.mp4", fps=16)
    write_mp4(np.repeat(frames[:1], 16, axis=0), folder / f"{PROMPT}-1.mp4", fps=16)
    return folder


def evaluate(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VBENCH_CACHE_DIR": str(cache)}
    command = [PYTHON, str(ROOT / "examples" / "vbench" / "evaluate.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def vbench_run(cache, videos, tmp_path_factory) -> tuple[subprocess.CompletedProcess, vbench.RunResults]:
    folder = tmp_path_factory.mktemp("vbench-run")
    full_info = folder / "full_info.json"
    full_info.write_text(json.dumps([{"prompt_en": PROMPT, "dimension": list(vbench.VBENCH_DIMENSIONS)}]))
    args = ("--videos", str(videos), "--name", "random", "--out", str(folder / "results"))
    run = evaluate(*args, "--full-info", str(full_info), "--offline", "--device", "cpu", cache=cache)
    assert run.returncode == 0, run.stderr[-3000:]
    return run, vbench.read_results(vbench.results_path(folder / "results", "random"))


def test_evaluate_writes_vbench_results_the_library_reads(vbench_run):
    run, results = vbench_run
    moving, still = f"{PROMPT}-0.mp4", f"{PROMPT}-1.mp4"
    for dimension in vbench.VBENCH_DIMENSIONS:
        assert set(results.videos[dimension]) == {moving, still}, dimension
        assert dimension in run.stdout
    for dimension in ("subject_consistency", "background_consistency"):  # identical frames: identical features
        assert results.videos[dimension][still] == pytest.approx(1.0, abs=1e-5)
        assert results.videos[dimension][moving] < results.videos[dimension][still]
    assert 0.0 <= results.videos["imaging_quality"][moving] <= 1.0
    aesthetic = results.videos["aesthetic_quality"].values()
    assert results.aggregates["aesthetic_quality"] == pytest.approx(np.mean(list(aesthetic)))


def test_quick_look_matches_vbench_video_by_video(cache, videos, vbench_run):
    from descore_reward.vbench.quick_look import QuickLook, read_frames

    _, results = vbench_run
    quick_look = QuickLook(cache_dir=cache)
    paths = sorted(videos.glob("*.mp4"))
    env = {**os.environ, "VBENCH_CACHE_DIR": str(cache)}
    motion = subprocess.run(
        [PYTHON, str(ROOT / "tests" / "vbench" / "motion_scores.py"), *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert motion.returncode == 0, motion.stderr[-3000:]
    vbench_motion = json.loads(motion.stdout.splitlines()[-1])
    for path in paths:
        scores = quick_look.score_file(path)
        for dimension in vbench.VBENCH_DIMENSIONS:
            assert scores[dimension] == pytest.approx(results.videos[dimension][path.name], abs=1e-4), dimension
        magnitudes = quick_look.motion_magnitudes(*read_frames(path))
        assert magnitudes == pytest.approx(vbench_motion[str(path)], rel=1e-4, abs=1e-4)


def test_evaluate_checks_its_input_before_loading_anything(cache, videos, tmp_path):
    misnamed = tmp_path / "misnamed"
    misnamed.mkdir()
    (misnamed / "clip.mp4").write_bytes((videos / f"{PROMPT}-0.mp4").read_bytes())
    run = evaluate("--videos", str(misnamed), "--name", "x", "--out", str(tmp_path), cache=cache)
    assert run.returncode == 2 and "clip.mp4 is not named {prompt}-{i}.mp4" in run.stderr

    empty_cache = tmp_path / "empty-cache"
    run = evaluate("--videos", str(videos), "--name", "x", "--out", str(tmp_path), "--offline", cache=empty_cache)
    assert run.returncode == 2 and "missing from the VBench cache" in run.stderr and "raft-things.pth" in run.stderr

    run = evaluate("--videos", str(videos), "--name", "x", "--out", str(tmp_path), cache=cache)
    assert run.returncode == 2 and "no file is named after a prompt" in run.stderr
