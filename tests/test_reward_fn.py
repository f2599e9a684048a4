"""`DeScoreReward`: every input format gives the same scores, in-memory videos never touch the disk,
failures are NaN with a reason (never a silent 0), and it works from threads and in a weighted mix."""

import os
import tempfile
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from descore_reward import DeScoreReward, WeightedRewards
from descore_reward.video import VideoInputError, VideoSampling, load_video


@pytest.fixture(scope="module")
def reward_fn(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("reward") / "descore"
    tiny_model.save_pretrained(path, include_backbone=True)
    return DeScoreReward(str(path), think=False, input_fps=8.0, device="cpu")


@pytest.fixture(scope="module")
def batch(synthetic_videos):
    """The synthetic MP4 files and the same frames decoded, as (B, T, C, H, W) floats in [0, 1]."""
    frames = [load_video(path, VideoSampling(fps=8.0, max_frames=16)).frames for path in synthetic_videos]
    return synthetic_videos, torch.stack(frames).float() / 255.0


def test_every_input_format_gives_the_same_scores(reward_fn, batch):
    paths, pt = batch
    prompts = ["a red square moves right"] * len(paths)
    formats = {
        "pt (B, T, C, H, W) float": pt,
        "np (B, T, H, W, C) float": pt.permute(0, 1, 3, 4, 2).numpy(),
        "uint8 tensor": (pt * 255).round().to(torch.uint8),
        "pil": [[Image.fromarray(f) for f in (v.permute(0, 2, 3, 1) * 255).round().byte().numpy()] for v in pt],
        "list of tensors": list(pt),
        "paths": [str(p) for p in paths],
    }
    reference, _ = reward_fn(formats["pt (B, T, C, H, W) float"], prompts)
    assert reference.dtype == np.float32 and reference.shape == (len(paths),)
    for name, videos in formats.items():
        scores, info = reward_fn(videos, prompts, metadata=[{}] * len(paths))
        np.testing.assert_allclose(scores, reference, atol=1e-4, err_msg=name)
        assert info["errors"] == [None] * len(paths)


def test_tensor_input_writes_no_file(reward_fn, batch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    reward_fn(batch[1], ["a prompt"] * len(batch[0]))
    assert os.listdir(tmp_path) == ["tmp"] and os.listdir(scratch) == []


def test_failures_are_nan_with_a_reason(reward_fn, batch, tmp_path, caplog):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    videos = [batch[1][0], str(bad), batch[1][1] * 2.0]
    with pytest.raises(VideoInputError, match="broken.mp4"):
        reward_fn(videos, ["p"] * 3)
    tolerant = DeScoreReward(reward_fn.model, input_fps=8.0, on_error="nan")
    scores, info = tolerant(videos, ["p"] * 3)
    assert np.isfinite(scores[0]) and np.isnan(scores[1]) and np.isnan(scores[2])
    assert "broken.mp4" in info["errors"][1] and "[0, 1]" in info["errors"][2] and info["errors"][0] is None
    assert "score is NaN" in caplog.text


def test_thinking_fills_info(reward_fn, batch):
    thinking = DeScoreReward(reward_fn.model, think=True, input_fps=8.0, max_new_tokens=4)
    scores, info = thinking(batch[1][:2], ["a red square", "a blue circle"])
    assert len(info["cot"]) == 2 and all(isinstance(c, str) for c in info["cot"]) and len(info["sub_scores"]) == 2


def test_worker_threads_and_weighted_mix(reward_fn, batch):
    prompts = ["a red square moves right"] * len(batch[0])
    expected, _ = reward_fn(batch[1], prompts)
    results = [None] * 3

    def work(slot):
        results[slot] = reward_fn(batch[1], prompts)[0]

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for scores in results:
        np.testing.assert_allclose(scores, expected, atol=1e-5)

    def brightness(videos, prompts, metadata=None):
        return np.asarray([float(v.mean()) for v in videos], dtype=np.float32), {}

    mixed = WeightedRewards({"descore": (reward_fn, 1.0), "brightness": (brightness, 0.5)})
    total, info = mixed(batch[1], prompts)
    np.testing.assert_allclose(total, expected + 0.5 * info["brightness"]["scores"], atol=1e-5)
    assert set(info) == {"descore", "brightness"}


def test_batch_shape_is_checked(reward_fn):
    with pytest.raises(VideoInputError, match="expected 5 dimensions"):
        reward_fn(torch.rand(4, 3, 16, 16), ["p"] * 4)
    with pytest.raises(ValueError, match="one prompt per video"):
        reward_fn(torch.rand(2, 4, 3, 16, 16), ["p"] * 3)


def test_building_a_reward_or_a_model_draws_nothing_from_the_global_generators(tiny_backbone_dir, tmp_path):
    from descore_reward.integrations import DeScoreReward
    from descore_reward.modeling import DeScoreConfig, DeScoreModel

    from .conftest import TINY_SAMPLING

    DeScoreModel.from_backbone(tiny_backbone_dir, DeScoreConfig(sampling=TINY_SAMPLING), seed=1).save_pretrained(
        tmp_path / "model", include_backbone=True
    )
    torch.manual_seed(1234)  # a training loop seeds, then builds its reward
    state = torch.get_rng_state()
    reward = DeScoreReward(str(tmp_path / "model"), device="cpu")
    fresh = DeScoreModel.from_backbone(tiny_backbone_dir, DeScoreConfig(sampling=TINY_SAMPLING), seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    again = DeScoreModel.from_backbone(tiny_backbone_dir, DeScoreConfig(sampling=TINY_SAMPLING), seed=7)
    assert torch.equal(fresh.head.layers.weight, again.head.layers.weight), "a seed still fixes a new head"
    assert reward.model.head.layers.weight.abs().sum() > 0
