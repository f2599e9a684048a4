"""DeScore dropped into Flow-GRPO's and DanceGRPO's calling patterns, reproduced here with this
project's own code: a tiny real `WanPipeline` makes the videos, the tiny real Qwen3-VL scores them."""

import logging
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from descore_reward import DeScoreReward
from descore_reward.errors import CheckpointError
from descore_reward.integrations import dance_grpo, flow_grpo, shared_model

from .conftest import load_wan

PROMPTS = ["a red square moves right", "a blue circle stays still"]


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("adapters") / "descore"
    tiny_model.save_pretrained(path, include_backbone=True)
    return path


@pytest.fixture(scope="module")
def wan_videos(tiny_wan_dir):
    """Flow-GRPO's input: `(B, T, C, H, W)` floats in [0, 1] from `output_type="pt"`, 2 videos per prompt."""
    pipeline = load_wan(tiny_wan_dir)
    output = pipeline(
        [p for p in PROMPTS for _ in range(2)],
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    )
    return output.frames, [p for p in PROMPTS for _ in range(2)]


def their_style_rewards_module():
    """A stand-in for `flow_grpo.rewards` written for this test: a `multi_score` that keeps its factories
    in a local dict, calls `f(device)` when 'device' is an argument name, and returns
    `({name: scores, "avg": weighted sum}, {})`."""

    def brightness_score():
        def score(images, prompts, metadata):
            return images.float().mean(dim=(1, 2, 3, 4)).tolist(), {}

        return score

    def multi_score(device, score_dict):
        factories = {"brightness": brightness_score}
        functions = {
            name: factories[name](device) if "device" in factories[name].__code__.co_varnames else factories[name]()
            for name in score_dict
        }

        def score(images, prompts, metadata, ref_images=None, only_strict=True):
            details, total = {}, []
            for name, weight in score_dict.items():
                scores, _ = functions[name](images, prompts, metadata)
                details[name] = scores
                weighted = [weight * s for s in scores]
                total = weighted if not total else [a + b for a, b in zip(total, weighted)]
            details["avg"] = total
            return details, {}

        return score

    return types.SimpleNamespace(multi_score=multi_score)


def test_flow_grpo_training_pattern(checkpoint, wan_videos, monkeypatch):
    monkeypatch.setenv("DESCORE_MODEL", str(checkpoint))
    module = their_style_rewards_module()
    flow_grpo.register(module)
    flow_grpo.register(module)  # twice is harmless
    reward_fn = module.multi_score("cpu", {"descore": 1.0, "brightness": 0.5})
    eval_reward_fn = module.multi_score("cpu", {"descore": 1.0})
    videos, prompts = wan_videos
    metadata = [{}] * len(prompts)
    expected, _ = DeScoreReward(checkpoint)(videos, prompts)
    for batch in (videos, videos.to(torch.bfloat16)):
        torch.manual_seed(0)
        drawn = []
        with ThreadPoolExecutor(max_workers=8) as executor:
            future = executor.submit(reward_fn, batch, prompts, metadata, only_strict=True)
            while not future.done():  # the main thread keeps sampling
                drawn.append(torch.randn(8))
            details, extra = future.result()
        torch.manual_seed(0)
        assert all(torch.equal(a, torch.randn(8)) for a in drawn), "the reward moved the global generator"
        assert extra == {} and set(details) == {"descore", "brightness", "avg"}
        rewards = {key: torch.as_tensor(value).float() for key, value in details.items()}  # what they do next
        atol = 1e-4 if batch.dtype == torch.float32 else 0.5  # bf16 rounds the frames before uint8
        np.testing.assert_allclose(rewards["descore"].numpy(), expected, atol=atol)
        brightness = batch.float().mean(dim=(1, 2, 3, 4))
        torch.testing.assert_close(rewards["avg"], rewards["descore"] + 0.5 * brightness, atol=1e-4, rtol=0)
    eval_details, _ = eval_reward_fn(videos, prompts, metadata)
    np.testing.assert_allclose(eval_details["avg"], expected, atol=1e-4)
    assert shared_model(checkpoint, "cpu") is DeScoreReward(checkpoint).model, "train and eval share one model"
    assert DeScoreReward(checkpoint)._lock is DeScoreReward(checkpoint)._lock, "and take turns on it"


def test_flow_grpo_factory_shape(checkpoint, monkeypatch):
    monkeypatch.setenv("DESCORE_MODEL", str(checkpoint))
    factory = flow_grpo.descore_score
    assert "device" in factory.__code__.co_varnames  # how Flow-GRPO decides to pass the device
    with pytest.raises(ValueError, match="not DeScore's"):
        flow_grpo.multi_score("cpu", {"descore": 1.0, "pickscore": 1.0})


def test_flow_grpo_takes_every_setting_from_the_environment_and_sub_scores_as_named_rewards(
    checkpoint, wan_videos, monkeypatch
):
    from descore_reward.errors import DeScoreInputError

    videos, prompts = wan_videos
    monkeypatch.setenv("DESCORE_MODEL", str(checkpoint))
    monkeypatch.setenv("DESCORE_MAX_NEW_TOKENS", "6")
    monkeypatch.setenv("DESCORE_BATCH_SIZE", "2")
    monkeypatch.setenv("DESCORE_ON_ERROR", "fill")
    monkeypatch.setenv("DESCORE_FILL_VALUE", "-9")
    weights = {"descore_think": 1.0, "descore_subject": 0.5, "descore_dynamics": 0.25}
    module = their_style_rewards_module()
    flow_grpo.register(module)
    calls = []
    model = shared_model(checkpoint, "cpu")
    original = model.score
    model.score = lambda *args, **kwargs: calls.append(kwargs) or original(*args, **kwargs)
    try:
        details, _ = module.multi_score("cpu", weights)(videos, prompts, [{}] * len(prompts), only_strict=True)
    finally:
        model.score = original
    assert len(calls) == 1 and calls[0]["think"] and calls[0]["max_new_tokens"] == 6, "one CoT per video for all"
    assert set(details) == {*weights, "avg"} and all(len(v) == len(prompts) for v in details.values())
    assert all(value in (0.0, 1.0, 2.0) for value in details["descore_subject"] + details["descore_dynamics"])
    expected = [sum(w * details[n][i] for n, w in weights.items()) for i in range(len(prompts))]
    np.testing.assert_allclose(details["avg"], expected, atol=1e-5)
    broken = torch.cat([videos[:1] * 3.0, videos[1:]])  # values outside [0, 1]: a failed video
    filled, _ = flow_grpo.descore_score("cpu")(broken, prompts, [{}] * len(prompts))
    assert filled[0] == -9.0, "DESCORE_ON_ERROR and DESCORE_FILL_VALUE reached the reward"
    with pytest.raises(ValueError, match="descore_colour"):
        flow_grpo.think_rewards("cpu", ["descore_colour"])
    monkeypatch.setenv("DESCORE_THINK", "perhaps")
    with pytest.raises(DeScoreInputError, match="DESCORE_THINK='perhaps'"):
        flow_grpo.descore_score("cpu")


def test_descore_reward_needs_a_checkpoint_or_the_variable(checkpoint, monkeypatch):
    monkeypatch.delenv("DESCORE_MODEL", raising=False)
    with pytest.raises(CheckpointError, match="DESCORE_MODEL") as error:
        DeScoreReward()
    assert "descore convert official" in str(error.value) and "descore demo" in str(error.value)
    monkeypatch.setenv("DESCORE_MODEL", str(checkpoint))
    assert DeScoreReward().model is DeScoreReward(checkpoint).model


def test_dance_grpo_pattern_reads_mp4_files(checkpoint, wan_videos, tmp_path, caplog):
    from diffusers.utils import export_to_video

    videos, prompts = wan_videos
    inferencer = dance_grpo.VideoAlignStyleInferencer(checkpoint, device="cpu")
    reference = DeScoreReward(checkpoint)
    for index, video in enumerate(videos[:2]):  # one video at a time, as their scripts do
        path = tmp_path / f"sample_{index}.mp4"
        export_to_video(list(video.permute(0, 2, 3, 1).numpy()), str(path), fps=8)
        reward = inferencer.reward([str(path)], [prompts[index]], use_norm=True)
        assert set(reward[0]) == {"VQ", "MQ", "TA", "Overall"}
        assert reward[0]["VQ"] == reward[0]["MQ"] == reward[0]["Overall"]
        assert reward[0]["VQ"] == pytest.approx(float(reference([str(path)], prompts[index : index + 1])[0][0]))


def dance_grpo_step(inferencer, paths, captions):
    """DanceGRPO's reward loop as their scripts write it: one video at a time, any exception a reward
    of -1.0, then group advantages `(r - mean) / (std + 1e-8)`."""
    rewards = []
    for path, caption in zip(paths, captions):
        try:
            reward = inferencer.reward([str(path)], [caption], use_norm=True)
            rewards.append(reward[0]["VQ"])
        except Exception:  # their code: the failure becomes -1.0 without a word
            rewards.append(-1.0)
    rewards = torch.tensor(rewards)
    return rewards, (rewards - rewards.mean()) / (rewards.std() + 1e-8)


def test_in_dance_grpos_loop_a_failed_video_is_logged_counted_and_never_rewarded(
    checkpoint, wan_videos, tmp_path, caplog
):
    from diffusers.utils import export_to_video

    videos, prompts = wan_videos
    paths = []
    for index, video in enumerate(videos):
        paths.append(tmp_path / f"sample_{index}.mp4")
        export_to_video(list(video.permute(0, 2, 3, 1).numpy()), str(paths[-1]), fps=8)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    for position in (0, 2):  # the failure first in its group (nothing scored yet) and later in it
        group = paths[:position] + [broken] + paths[position:]
        inferencer = dance_grpo.VideoAlignStyleInferencer(checkpoint, device="cpu")
        with caplog.at_level(logging.WARNING):
            rewards, advantages = dance_grpo_step(inferencer, group, [prompts[0]] * len(group))
        others = torch.cat([rewards[:position], rewards[position + 1 :]])
        assert rewards[position] < others.min(), "below every reward of its group, whatever the scale"
        assert advantages[position] < 0 and advantages[position] == advantages.min()
        assert inferencer.failures == 1 and "broken.mp4" in caplog.text and "VideoInputError" in caplog.text
    strict = dance_grpo.VideoAlignStyleInferencer(checkpoint, device="cpu", raise_errors=True)
    with pytest.raises(dance_grpo.RewardFailure, match="broken.mp4"):  # their except Exception cannot stop it
        dance_grpo_step(strict, [paths[0], broken], [prompts[0]] * 2)
    assert strict.failures == 1
    fixed = dance_grpo.VideoAlignStyleInferencer(checkpoint, device="cpu", fill_value=-7.0)
    assert fixed.reward([str(broken)], [prompts[0]])[0]["Overall"] == -7.0


def test_a_model_side_failure_is_logged_and_counted(checkpoint, wan_videos, tmp_path, caplog):
    from diffusers.utils import export_to_video

    path = tmp_path / "sample.mp4"
    export_to_video(list(wan_videos[0][0].permute(0, 2, 3, 1).numpy()), str(path), fps=8)
    inferencer = dance_grpo.VideoAlignStyleInferencer(checkpoint, device="cpu", fill_value=-5.0)
    model = inferencer.reward_fn.model
    original = model.score

    def out_of_memory(*args, **kwargs):  # what a GPU out of memory looks like from here
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model.score = out_of_memory
    try:
        with caplog.at_level(logging.WARNING):
            assert inferencer.reward([str(path)], ["a red square"])[0]["MQ"] == -5.0
    finally:
        model.score = original
    assert inferencer.failures == 1 and "OutOfMemoryError" in caplog.text and "sample.mp4" in caplog.text


def test_videoalign_fps_is_a_sampling_rate(checkpoint, tmp_path):
    from descore_reward.synthetic import Scene, render, write_mp4

    path = write_mp4(render(Scene("red", "square", "right"), frames=33), tmp_path / "clip.mp4", fps=16)
    inferencer = dance_grpo.VideoAlignStyleInferencer(checkpoint, device="cpu")
    model = inferencer.reward_fn.model
    seen = []
    original = model.score

    def record(videos, *args, **kwargs):  # the real model scores; this records the frames it was given
        seen.append([video.frames.shape[0] for video in videos])
        return original(videos, *args, **kwargs)

    model.score = record
    try:
        inferencer.reward([path], ["a red square"], fps=2)
        inferencer.reward([path], ["a red square"], num_frames=8)
        inferencer.reward([path], ["a red square"], num_frames=7)
    finally:
        model.score = original
    assert seen == [[4], [8], [8]], "2 fps over a 2-second clip is 4 frames, not all 33; 7 rounds to 8"
    with pytest.raises(ValueError, match="fps and num_frames"):
        inferencer.reward([path], ["a red square"], fps=2, num_frames=8)


def test_input_fps_fill_and_deprecations(tiny_model, synthetic_videos):
    with pytest.warns(DeprecationWarning, match="input_fps"):
        DeScoreReward(tiny_model, fps=8.0)
    with pytest.warns(UserWarning, match="in-memory videos only"):
        DeScoreReward(tiny_model, input_fps=8.0)([str(synthetic_videos[0])], ["p"])
    filled = DeScoreReward(tiny_model, on_error="fill", fill_value=-3.0)
    one_frame = torch.rand(1, 3, 32, 32)
    scores, info = filled([torch.rand(4, 3, 32, 32) * 2, one_frame, str(synthetic_videos[0])], ["p"] * 3)
    assert scores[0] == -3.0 and np.isfinite(scores[1:]).all()
    assert info["valid"] == [False, True, True] and "[0, 1]" in info["errors"][0]
    assert filled(torch.rand(2, 4, 3, 32, 32), ["p", "p"], [{}, {}], only_strict=True, anything=1)[0].shape == (2,)
