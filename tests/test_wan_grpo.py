"""Longcat-style GRPO on the real diffusers Wan classes at toy size: the SDE step's log-probability,
the sampler's bookkeeping, advantages, and the loop end to end with DeScoreReward, resume and LoRA."""

import numpy as np
import pytest
import torch

from descore_reward import DeScoreReward, WeightedRewards
from descore_reward.wan.generation import WanSampling
from descore_reward.wan.grpo import (
    WanGRPOConfig,
    policy_step_loss,
    sample_with_log_probs,
    sde_step,
    train,
)
from descore_reward.wan.lora import add_transformer_lora

from .conftest import load_wan

SIZE = dict(height=32, width=32, num_frames=9)


def test_sde_step_log_prob_is_the_gaussian_density():
    generator = torch.Generator().manual_seed(0)
    sample, velocity = torch.randn(2, 4, 3, 5, generator=generator), torch.randn(2, 4, 3, 5, generator=generator)
    next_sample, log_prob, mean, scale = sde_step(velocity, sample, 0.8, 0.6, 0.7, generator)
    expected = torch.distributions.Normal(mean, scale).log_prob(next_sample).mean(dim=(1, 2, 3))
    torch.testing.assert_close(log_prob, expected)
    manual_mean = sample + (-0.2) * (velocity + (0.7**2 * 0.8 / 0.2) / (2 * 0.8) * (sample + 0.2 * velocity))
    torch.testing.assert_close(mean, manual_mean)
    _, at_one, _, first_scale = sde_step(velocity, sample, 1.0, 0.9, 0.7, generator)
    assert torch.isfinite(at_one).all() and first_scale == pytest.approx(0.7 * (1 / 0.1) ** 0.5 * 0.1**0.5)


@pytest.mark.parametrize("guidance_scale", [1.0, 4.5])
def test_sampler_records_what_training_replays(tiny_wan_dir, guidance_scale):
    """The policy that sampled gives the recorded log-probs back, guided as when sampled: at the first
    update the ratio is exactly 1 and no video is clipped."""
    pipeline = load_wan(tiny_wan_dir)
    torch.manual_seed(0)
    add_transformer_lora(pipeline.transformer, 4, 8)
    trajectory = sample_with_log_probs(
        pipeline,
        ["a red square"] * 3,
        WanSampling(num_inference_steps=5, guidance_scale=guidance_scale, negative_prompt="", **SIZE),
        noise_level=0.7,
        generator=torch.Generator().manual_seed(1),
    )
    assert trajectory.videos.shape == (3, 9, 3, 32, 32) and 0 <= trajectory.videos.min() <= trajectory.videos.max() <= 1
    assert trajectory.latents.shape[1] == 6 and trajectory.log_probs.shape == (3, 5)
    assert (trajectory.negative_text is not None) == (guidance_scale > 1)
    config = WanGRPOConfig(pipeline="-", output_dir="-", prompts=["-"], noise_level=0.7)
    with torch.no_grad():
        for step in range(4):
            loss, stats = policy_step_loss(pipeline.transformer, trajectory, torch.ones(3), step, config)
            assert stats["clip_fraction"] == 0.0
            assert loss.item() == pytest.approx(-1.0, abs=1e-5), "ratio 1 and a zero KL: the loss is -advantage"


def test_guidance_changes_the_samples(tiny_wan_dir):
    pipeline = load_wan(tiny_wan_dir)
    videos = [
        sample_with_log_probs(
            pipeline,
            ["a red square"],
            WanSampling(num_inference_steps=3, guidance_scale=scale, negative_prompt="", **SIZE),
            noise_level=0.7,
            generator=torch.Generator().manual_seed(1),
        ).videos
        for scale in (1.0, 4.5)
    ]
    assert not torch.allclose(*videos)


def test_several_updates_per_batch_make_the_clip_act(tiny_wan_dir, tmp_path):
    """One update per sampled batch leaves every ratio at 1; with two, the second mini-batch meets a
    policy the first has moved, and with a large step the clip range acts."""

    def clip_fraction(updates):
        config = WanGRPOConfig(
            pipeline=str(tiny_wan_dir),
            output_dir=str(tmp_path / f"updates{updates}"),
            prompts=["a red square"],
            steps=1,
            prompts_per_step=1,
            group_size=4,
            updates_per_batch=updates,
            num_inference_steps=3,
            guidance_scale=1.0,
            learning_rate=1e-1,
            lora_rank=4,
            lora_alpha=8,
            report_to=None,
            **SIZE,
        )
        return train(config, load_wan(tiny_wan_dir), mean_brightness)["history"][0]["clip_fraction"]

    assert clip_fraction(1) == 0.0 and clip_fraction(2) > 0.0


def test_the_kl_forms_differ_by_the_step_size(tiny_wan_dir):
    pipeline = load_wan(tiny_wan_dir)
    torch.manual_seed(0)
    add_transformer_lora(pipeline.transformer, 4, 8)
    with torch.no_grad():
        for parameter in pipeline.transformer.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05)  # a policy away from the reference
    trajectory = sample_with_log_probs(
        pipeline,
        ["a red square"] * 2,
        WanSampling(num_inference_steps=5, guidance_scale=1.0, **SIZE),
        noise_level=0.7,
        generator=torch.Generator().manual_seed(1),
    )
    kls = {}
    for form in ("flow_grpo", "gaussian"):
        config = WanGRPOConfig(pipeline="-", output_dir="-", prompts=["-"], kl_form=form)
        with torch.no_grad():
            kls[form] = policy_step_loss(pipeline.transformer, trajectory, torch.zeros(2), 1, config)[1]["kl"]
    step = trajectory.sigmas[1] - trajectory.sigmas[2]
    assert kls["gaussian"] > 0 and kls["flow_grpo"] == pytest.approx(kls["gaussian"] * step, rel=1e-5)


def test_group_advantages_as_flow_grpo():
    from descore_reward.losses import group_advantages

    advantages = group_advantages(np.array([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), 3, bessel=False, clip=5.0)
    spread = (2 / 3) ** 0.5  # the group's std without Bessel's correction, as Flow-GRPO
    torch.testing.assert_close(advantages[:3], torch.tensor([-1.0, 0.0, 1.0]) / spread, atol=1e-3, rtol=0)
    assert torch.all(advantages[3:] == 0)
    assert group_advantages(np.array([0.0, 0.0, 0.0, 1e6]), 4, bessel=False, clip=1.0).abs().max() == 1.0


def mean_brightness(videos, prompts, metadata=None):
    """A deterministic reward: the mean pixel value of each `(T, C, H, W)` video in [0, 1]."""
    return videos.float().mean(dim=(1, 2, 3, 4)).numpy(), {}


def darkness(videos, prompts, metadata=None):
    return -mean_brightness(videos, prompts)[0], {}


@pytest.mark.slow
def test_a_few_steps_move_fresh_samples_the_way_the_reward_points(tiny_wan_dir, tmp_path):
    """The sign and plumbing of the loop. Sixty fixed-seed steps on mean brightness make fresh samples
    (the same noise as before training) brighter, and the same steps on its negation make them darker.
    Through a random VAE decoder the policy gradient is noisy, so gains are measured in units of the
    untrained samples' spread. Measured (brighter, darker) with these settings and config seeds 0-3:
    (1.0, 1.4), (1.76, 2.04), (0.51, 2.12), (1.06, 5.23); the thresholds (each above 0.25, together
    above 1.5) leave the worst seed a margin of 2x and 1.75x (0.51, 2.63)."""

    def train_and_sample(reward_fn, name):
        pipeline = load_wan(tiny_wan_dir)
        config = WanGRPOConfig(
            pipeline=str(tiny_wan_dir),
            output_dir=str(tmp_path / name),
            prompts=["a red square", "a blue circle"],
            steps=60,
            group_size=4,
            prompts_per_step=4,
            updates_per_batch=1,
            guidance_scale=1.0,
            kl_form="gaussian",
            num_inference_steps=6,
            learning_rate=1e-2,
            lora_rank=4,
            lora_alpha=8,
            save_every=100,
            report_to=None,
            **SIZE,
        )
        train(config, pipeline, reward_fn)
        pipeline.transformer.eval()
        brightness = {}
        for adapter in ("trained", "untrained"):
            if adapter == "untrained":
                pipeline.transformer.disable_adapters()
            trajectory = sample_with_log_probs(
                pipeline,
                config.prompts * 8,
                WanSampling(num_inference_steps=6, guidance_scale=1.0, **SIZE),
                noise_level=0.7,
                generator=torch.Generator().manual_seed(123),
            )
            brightness[adapter] = mean_brightness(trajectory.videos, None)[0]
        return brightness

    brightened, darkened = train_and_sample(mean_brightness, "brightness"), train_and_sample(darkness, "darkness")
    before = brightened["untrained"]
    np.testing.assert_allclose(darkened["untrained"], before)
    spread = before.std()
    gains = (
        (brightened["trained"].mean() - before.mean()) / spread,
        (before.mean() - darkened["trained"].mean()) / spread,
    )
    assert min(gains) > 0.25 and sum(gains) > 1.5, gains


def test_runs_end_to_end_with_descore_resumes_and_saves_a_loadable_lora(tiny_wan_dir, tiny_model, tmp_path):
    descore = DeScoreReward(tiny_model, input_fps=8.0)
    rewards = WeightedRewards(
        {
            "descore": (descore, 1.0),
            "brightness": (lambda v, p, m=None: (v.float().mean(dim=(1, 2, 3, 4)).numpy(), {}), 0.1),
        }
    )

    def config(name):
        return WanGRPOConfig(
            pipeline=str(tiny_wan_dir),
            output_dir=str(tmp_path / name),
            prompts=["a red square", "a blue circle"],
            steps=4,
            group_size=2,
            prompts_per_step=1,
            num_inference_steps=4,
            learning_rate=1e-2,
            lora_rank=4,
            lora_alpha=8,
            save_every=100,
            **SIZE,
        )

    straight = train(config("straight"), load_wan(tiny_wan_dir), rewards)
    history = straight["history"]
    assert len(history) == 4 and all(
        np.isfinite(row[name]) for row in history for name in ("reward", "kl", "clip_fraction")
    )
    train(config("resumed"), load_wan(tiny_wan_dir), rewards, stop_after=2)
    resumed = train(config("resumed"), load_wan(tiny_wan_dir), rewards)
    assert [r["loss"] for r in resumed["history"]] == pytest.approx([r["loss"] for r in history], abs=1e-5)
    assert (tmp_path / "resumed" / "training_curves.png").stat().st_size > 0

    fresh = load_wan(tiny_wan_dir)
    kwargs = dict(
        generator=torch.Generator().manual_seed(0), output_type="pt", num_inference_steps=4, guidance_scale=1.0, **SIZE
    )
    baseline = fresh("a red square", **kwargs).frames
    fresh.load_lora_weights(tmp_path / "straight" / "final")
    kwargs["generator"] = torch.Generator().manual_seed(0)
    assert not torch.allclose(baseline, fresh("a red square", **kwargs).frames, atol=1e-5)


def test_fp16_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"mixed_precision must be one of \('no', 'bf16'\), got 'fp16'"):
        WanGRPOConfig(pipeline="p", output_dir="out", prompts=["a red square"], mixed_precision="fp16")
