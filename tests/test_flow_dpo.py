"""Flow-DPO on the real diffusers WanPipeline classes at toy size: pair labelling, the loss, training,
resume, and a LoRA that a fresh pipeline loads."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from descore_reward.data import DataError
from descore_reward.wan.flow_dpo import (
    FlowDPOConfig,
    flow_dpo_loss,
    rank_dpo_pairs,
    read_dpo_pairs,
    train,
    velocity_error,
)
from descore_reward.wan.generation import WanSampling
from descore_reward.wan.vae import cached_latents, encode_video

from .conftest import load_wan

GENERATION = dict(height=32, width=32, num_frames=9, num_inference_steps=3, guidance_scale=1.0)
PROMPTS = ["a red square moves right", "a blue circle stays still", "a green square moves up"]


def brightness(videos, prompts, metadata=None):
    """A deterministic stand-in reward: mean brightness of each decoded file."""
    from descore_reward.video import load_video

    return np.asarray([float(load_video(v).frames.float().mean()) for v in videos], dtype=np.float32), {}


@pytest.fixture(scope="module")
def pairs_file(tiny_wan_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo_pairs")
    return rank_dpo_pairs(
        brightness,
        PROMPTS,
        out,
        pipeline=load_wan(tiny_wan_dir),
        samples_per_prompt=3,
        sampling=WanSampling(**GENERATION),
    )


def test_flow_dpo_loss_matches_the_formula():
    err_w, err_l = torch.tensor([0.5, 0.2]), torch.tensor([0.4, 0.9])
    ref_w, ref_l = torch.tensor([0.45, 0.3]), torch.tensor([0.5, 0.7])
    beta = 100.0
    expected = []
    for i in range(2):
        inside = -beta / 2 * ((err_w[i] - ref_w[i]) - (err_l[i] - ref_l[i])).item()
        expected.append(-math.log(1 / (1 + math.exp(-inside))))
    assert flow_dpo_loss(err_w, err_l, ref_w, ref_l, beta).item() == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_labelling_writes_best_against_worst_and_resumes(tiny_wan_dir, pairs_file):
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS
    for row in rows:
        assert row["label"] == "A" and row["reward_a"] >= row["reward_b"]
        scores = brightness(
            [str(p) for p in sorted((pairs_file.parent / "videos").glob(f"{row['id'].removeprefix('prompt-')}_*.mp4"))],
            None,
        )[0]
        assert row["reward_a"] == pytest.approx(scores.max()) and row["reward_b"] == pytest.approx(scores.min())
    videos = sorted((pairs_file.parent / "videos").glob("*.mp4"))
    stamps = [p.stat().st_mtime_ns for p in videos]
    rank_dpo_pairs(brightness, PROMPTS, pairs_file.parent, pipeline=None, samples_per_prompt=3)  # nothing to redo
    assert [p.stat().st_mtime_ns for p in videos] == stamps and len(pairs_file.read_text().splitlines()) == 3
    complete = pairs_file.read_text()
    pairs_file.write_text("".join(complete.splitlines(keepends=True)[:2]) + complete.splitlines()[2][:25])  # torn
    rank_dpo_pairs(brightness, PROMPTS, pairs_file.parent, pipeline=None, samples_per_prompt=3)
    assert pairs_file.read_text() == complete, "the torn row is ranked again from its saved videos"
    strict = rank_dpo_pairs(
        brightness,
        PROMPTS,
        pairs_file.parent / "strict",
        pipeline=load_wan(tiny_wan_dir),
        samples_per_prompt=2,
        min_gap=1e9,
        sampling=WanSampling(**GENERATION),
    )
    assert not strict.exists() or strict.read_text() == ""
    assert len((pairs_file.parent / "strict" / "skipped.jsonl").read_text().splitlines()) == 3


def test_bad_pair_files_are_named(tmp_path, pairs_file):
    bad = tmp_path / "pairs.jsonl"
    row = {"id": "1", "prompt": "x", "video_a": "nope.mp4", "video_b": "nope.mp4", "label": "A"}
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:1: video_a file not found"):
        read_dpo_pairs(bad)
    video = str(read_dpo_pairs(pairs_file)[0].video_a)
    bad.write_text(json.dumps({**row, "video_a": video, "video_b": video, "label": "tie"}) + "\n")
    with pytest.raises(DataError, match="holds no decided pair"):
        read_dpo_pairs(bad)


def fixed_dpo_loss(pipeline, pairs_file) -> float:
    """The DPO loss on every pair at fixed noise and times (the reference is the adapter-free model)."""
    rows = read_dpo_pairs(pairs_file)
    generator = torch.Generator().manual_seed(99)
    total = 0.0
    transformer = pipeline.transformer
    with torch.no_grad():
        for row in rows:
            x_w, x_l = (encode_video(pipeline, video)[None] for video in row.winner_and_loser)
            text = pipeline.encode_prompt(row.prompt, do_classifier_free_guidance=False)[0]
            for _ in range(4):
                noise = torch.randn(x_w.shape, generator=generator)
                sigma = torch.sigmoid(torch.randn(1, generator=generator))
                transformer.disable_adapters()
                ref = [velocity_error(transformer, x, noise, sigma, text) for x in (x_w, x_l)]
                transformer.enable_adapters()
                err = [velocity_error(transformer, x, noise, sigma, text) for x in (x_w, x_l)]
                total += flow_dpo_loss(err[0], err[1], ref[0], ref[1], 100.0).item()
    return total


def test_training_lowers_the_dpo_loss_and_saves_a_loadable_lora(tiny_wan_dir, pairs_file, tmp_path):
    pipeline = load_wan(tiny_wan_dir)
    config = FlowDPOConfig(
        pipeline=str(tiny_wan_dir),
        pairs=str(pairs_file),
        output_dir=str(tmp_path / "dpo"),
        steps=40,
        learning_rate=1e-3,
        lora_rank=4,
        lora_alpha=8,
        save_every=20,
    )
    from descore_reward.wan.lora import add_transformer_lora

    probe = load_wan(tiny_wan_dir)
    add_transformer_lora(probe.transformer, 4, 8)
    train(config, model=pipeline)
    # The trained adapter against the reference, on fixed noise: below the untrained adapter's loss.
    before = fixed_dpo_loss(probe, pairs_file)
    after = fixed_dpo_loss(pipeline, pairs_file)
    assert after < before, (before, after)

    fresh, baseline = load_wan(tiny_wan_dir), None
    baseline = fresh("a red square", generator=torch.Generator().manual_seed(0), output_type="pt", **GENERATION).frames
    fresh.load_lora_weights(tmp_path / "dpo" / "final")
    adapted = fresh("a red square", generator=torch.Generator().manual_seed(0), output_type="pt", **GENERATION).frames
    assert not torch.allclose(baseline, adapted, atol=1e-4)


def losses(state: dict) -> list[float]:
    return [row["loss"] for row in state["history"]]


def test_resume_matches_an_uninterrupted_run(tiny_wan_dir, pairs_file, tmp_path):
    """The resumed run also reads its latents from an on-disk cache: same losses as encoding each time."""

    def config(name, **cache):
        return FlowDPOConfig(
            pipeline=str(tiny_wan_dir),
            pairs=str(pairs_file),
            output_dir=str(tmp_path / name),
            steps=6,
            learning_rate=1e-3,
            lora_rank=4,
            lora_alpha=8,
            save_every=100,
            report_to=None,
            **cache,
        )

    straight = train(config("straight"), model=load_wan(tiny_wan_dir))
    cache = str(tmp_path / "latents")
    train(config("resumed", latent_cache=cache), model=load_wan(tiny_wan_dir), stop_after=3)
    assert 0 < len(list((tmp_path / "latents").glob("*.safetensors"))) <= 6
    resumed = train(config("resumed", latent_cache=cache), model=load_wan(tiny_wan_dir))
    assert losses(resumed) == pytest.approx(losses(straight), abs=1e-5)
    assert (tmp_path / "resumed" / "training_curves.png").stat().st_size > 0


def test_latent_cache_reuses_entries_and_notices_an_edited_video(tiny_wan_dir, pairs_file, tmp_path):
    pipeline = load_wan(tiny_wan_dir)
    first, second = sorted((pairs_file.parent / "videos").glob("*.mp4"))[:2]
    video, cache = tmp_path / "video.mp4", tmp_path / "cache"
    shutil.copy(first, video)
    latents = cached_latents(pipeline, video, cache)
    torch.testing.assert_close(latents, encode_video(pipeline, video))
    (entry,) = cache.iterdir()
    written = entry.stat().st_mtime_ns
    assert torch.equal(cached_latents(pipeline, video, cache), latents)
    assert list(cache.iterdir()) == [entry] and entry.stat().st_mtime_ns == written, "read, not written again"
    shutil.copy(second, video)
    os.utime(video, ns=(written + 10**9, written + 10**9))  # a new modification time, whatever the clock
    edited = cached_latents(pipeline, video, cache)
    assert len(list(cache.iterdir())) == 2
    torch.testing.assert_close(edited, encode_video(pipeline, video))
    assert not torch.allclose(edited, latents)


def test_fp16_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"mixed_precision must be one of \('no', 'bf16'\), got 'fp16'"):
        FlowDPOConfig(pipeline="p", pairs="pairs.jsonl", output_dir="out", mixed_precision="fp16")
