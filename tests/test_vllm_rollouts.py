"""Stage 2's rollouts on a vLLM engine (`training/vllm_rollouts.py`) against the training model and the
Hugging Face sampler, on a tiny Qwen3-VL whose head dimension vLLM's CPU attention accepts. They need vLLM,
which has an environment of its own (`.ci/vllm_env.sh`; `.ci/run` runs this file there)."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

if os.environ.get("DESCORE_REQUIRE_VLLM"):
    import vllm  # noqa: F401
else:
    pytest.importorskip("vllm")

from descore_reward.data import read_pairs  # noqa: E402
from descore_reward.modeling import DeScoreModel  # noqa: E402
from descore_reward.synthetic import make_dataset  # noqa: E402
from descore_reward.training import rl  # noqa: E402
from descore_reward.training.rollouts import logprobs_and_rewards, sample_rollouts  # noqa: E402
from descore_reward.training.vllm_rollouts import VLLMRollouts  # noqa: E402

from .test_vllm import CPU_ENGINE, lora_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> dict:
    """A tiny stage-1 checkpoint with a LoRA adapter that moves the weights (so merging it matters), and
    two training pairs with ground-truth sub-scores."""
    root = tmp_path_factory.mktemp("vllm-rollouts")
    data = make_dataset(root / "data", 2, seed=0, tie_rate=0.0)
    return {"checkpoint": lora_checkpoint(root), "data": data, "root": root}


def rl_config(stage1, **changes) -> rl.RLConfig:
    values = dict(
        model=str(stage1["checkpoint"]),
        train_data=str(stage1["data"]),
        output_dir=str(stage1["root"] / "run"),
        group_size=2,
        pairs_per_step=2,
        max_new_tokens=24,
        learning_rate=5e-2,
        report_to=None,
    )
    return rl.RLConfig(**{**values, **changes})


def policy(stage1, config) -> DeScoreModel:
    return rl.prepare_policy(DeScoreModel.from_pretrained(stage1["checkpoint"], is_trainable=True), config)


@pytest.fixture(scope="module")
def engine(stage1):
    engine = VLLMRollouts(stage1["checkpoint"], **CPU_ENGINE)
    yield engine
    engine.close()


def test_first_step_log_probs_are_the_training_models(stage1, engine):
    """Sampled at temperature 1 on the engine, every CoT token's log-prob as vLLM reports it equals the
    training model's (the distribution the ratio and the KL are computed from) within 1e-4."""
    config = rl_config(stage1)
    model = policy(stage1, config)
    engine.sync(model)
    rollouts = engine.sample(model, read_pairs(stage1["data"]), config, seed=0)
    assert len(rollouts.texts) == 8 and rollouts.response_mask.sum() > 40
    assert len(set(rollouts.texts)) > 1, "sampled, not greedy"
    logprobs, _ = logprobs_and_rewards(model, rollouts)
    mask = rollouts.response_mask
    torch.testing.assert_close(rollouts.sampler_logprobs[mask], logprobs[mask], rtol=0, atol=1e-4)


def test_after_an_update_the_engine_samples_the_updated_policy(stage1, engine):
    config = rl_config(stage1)
    model = policy(stage1, config)
    pairs = read_pairs(stage1["data"])
    engine.sync(model)
    before = engine.sample(model, pairs, config, seed=0, greedy=True).texts
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    rl.policy_update(model, optimizer, sample_rollouts(model, pairs, config), config)
    updated = sample_rollouts(model, pairs, config, greedy=True).texts  # the HF policy's greedy CoTs
    assert updated != before, "the update moves the greedy CoTs (else this test shows nothing)"
    engine.sync(model)
    assert engine.sample(model, pairs, config, seed=0, greedy=True).texts == updated


def test_greedy_steps_equal_those_with_hf_rollouts(stage1, engine):
    """Three stage-2 steps, both samplers greedy: the same CoTs, rule rewards, advantages and updates."""
    config = rl_config(stage1)
    pairs = read_pairs(stage1["data"])
    on_vllm = policy(stage1, config)
    on_hf = copy.deepcopy(on_vllm)
    optimizers = [
        torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
        for model in (on_vllm, on_hf)
    ]
    engine.sync(on_vllm)
    for step in range(3):
        torch.manual_seed(step)
        ours = engine.sample(on_vllm, pairs, config, seed=step, greedy=True)
        theirs = sample_rollouts(on_hf, pairs, config, greedy=True)
        assert ours.texts == theirs.texts, f"step {step}"
        torch.testing.assert_close(ours.sequence["input_ids"], theirs.sequence["input_ids"], rtol=0, atol=0)
        torch.testing.assert_close(ours.rewards, theirs.rewards, rtol=0, atol=0)
        torch.testing.assert_close(ours.advantages, theirs.advantages, rtol=0, atol=0)
        stats = [rl.policy_update(m, o, r, config) for m, o, r in zip((on_vllm, on_hf), optimizers, (ours, theirs))]
        assert stats[0]["loss"] == pytest.approx(stats[1]["loss"], abs=1e-6)
        engine.sync(on_vllm)
    trained = {name: p for name, p in on_hf.named_parameters() if p.requires_grad}
    for name, parameter in on_vllm.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter, trained[name], rtol=0, atol=1e-6, msg=name)


def test_stage_two_trains_on_vllm_rollouts(stage1, tmp_path):
    """`rollout_engine: vllm` in the trainer: it runs, resumes, and writes an ordinary checkpoint."""
    config = rl_config(stage1, output_dir=str(tmp_path / "run"), steps=2, rollout_engine="vllm")
    config = rl.RLConfig(**{**config.__dict__, "rollout_engine_arguments": CPU_ENGINE})
    rl.train(config, stop_after=1)
    state = rl.train(config)  # resumed from step 1
    assert [row["step"] for row in state["history"]] == [1, 2]
    assert all(math.isfinite(row["loss"]) for row in state["history"])
    assert DeScoreModel.from_pretrained(tmp_path / "run" / "final").config.training[-1]["steps"] == 2
    assert not (tmp_path / "run" / "rollout_engine").exists(), "the engine's export goes when the run is done"
