"""Stage 1 on a tiny random Qwen3-VL and the synthetic task: learning, masking, resume, LoRA, config."""

import dataclasses
import json

import pytest
import torch
import yaml

from descore_reward.data import DataError
from descore_reward.synthetic import make_dataset
from descore_reward.training.cold_start import ColdStartConfig, build_model, cot_mask, masked_cots, train
from descore_reward.training.config import load_config

from .conftest import TINY_SAMPLING

SAMPLING = dict(
    fps=TINY_SAMPLING.fps,
    max_pixels_per_frame=TINY_SAMPLING.max_pixels_per_frame,
    max_total_pixels=TINY_SAMPLING.max_total_pixels,
)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cold_start_data")
    return make_dataset(folder, 32, seed=0), make_dataset(folder, 16, seed=1, name="eval.jsonl")


def config_for(backbone, data, output_dir, **overrides):
    train_data, eval_data = data
    values = dict(
        model=str(backbone),
        train_data=str(train_data),
        eval_data=str(eval_data),
        output_dir=str(output_dir),
        lora=False,
        learning_rate=1e-3,
        batch_size=4,
        micro_batch_size=2,
        epochs=1,
        eval_every=1000,
        save_every=1000,
        report_to=None,
        sampling=SAMPLING,
    )
    values.update(overrides)
    return ColdStartConfig(**values)


@pytest.mark.slow
def test_learns_the_synthetic_task_with_and_without_cot(demo_run):
    """From about chance to >= 0.8 held-out pair accuracy, with the CoT and with it masked.

    The demo's run (shared fixture): a tiny random Qwen3-VL, full fine-tune, seed 0, 512 synthetic
    pairs whose losers differ from the prompt in colour only (a 2-layer random model learns to match
    colour words to raw video in two CPU minutes; motion direction needs more capacity and time),
    64 held-out pairs, 4 epochs of batch 16, p_mask 0.75.
    """
    out, result = demo_run
    assert result.returncode == 0, result.stderr
    state = json.loads((out / "cold_start" / "trainer_state.json").read_text())
    before, after = state["evaluations"][0], state["evaluations"][-1]
    assert before["step"] == 0 and after["step"] == 128
    assert before["accuracy_masked"] < 0.75, state["evaluations"]  # a random model: chance, give or take
    assert after["accuracy_cot"] >= 0.8 and after["accuracy_masked"] >= 0.8, state["evaluations"]
    assert (out / "cold_start" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_cot_masking_rate():
    masks = [m for step in range(500) for m in cot_mask(16, 0.3, (0, 0, step))]
    assert abs(sum(masks) / len(masks) - 0.3) < 0.02
    assert cot_mask(64, 0.3, (0, 1, 2)) == cot_mask(64, 0.3, (0, 1, 2))
    assert cot_mask(64, 0.3, (0, 1, 2)) != cot_mask(64, 0.3, (0, 1, 3))
    assert not any(cot_mask(100, 0.0, (1,))) and all(cot_mask(100, 1.0, (1,)))


def test_masked_sequences_lose_their_cot_tokens(tiny_model, small_data):
    """Over many batches, the fraction of sequences tokenised without their CoT matches p_mask."""
    from descore_reward.data import read_jsonl

    pairs = read_jsonl(small_data[0])[:4]
    videos, prompts = [p.video_a for p in pairs] + [p.video_b for p in pairs], [p.prompt for p in pairs] * 2
    inputs = tiny_model.prepare_inputs(videos, prompts)
    bare = inputs["attention_mask"].sum(1) + 1  # the prompt and <reward>
    dropped = total = 0
    for step in range(50):
        cots_a, cots_b = masked_cots(pairs, 0.25, (0, 0, step), per="sequence")
        sequence = tiny_model.scored_sequences(inputs, *tiny_model.tokenize_cots(cots_a + cots_b))
        lengths = sequence["attention_mask"].sum(1)
        dropped += int((lengths == bare).sum())
        total += len(lengths)
    assert abs(dropped / total - 0.25) < 0.05


def test_masks_are_drawn_per_pair_at_the_rate_and_differ_between_processes(small_data):
    from descore_reward.data import read_jsonl

    pairs = read_jsonl(small_data[0])[:8]
    dropped = []
    for step in range(200):
        cots_a, cots_b = masked_cots(pairs, 0.5, (0, 0, step, 0))
        assert [a is None for a in cots_a] == [b is None for b in cots_b], "both videos of a pair share the draw"
        dropped += [a is None for a in cots_a]
    assert abs(sum(dropped) / len(dropped) - 0.5) < 0.04
    per_rank = [masked_cots(pairs, 0.5, (0, 0, 7, rank))[0] for rank in (0, 1)]
    assert per_rank[0] != per_rank[1], "each process draws its own masks"
    cots_a, cots_b = masked_cots(pairs, 0.5, (0, 0, 3, 0), per="sequence")
    assert [a is None for a in cots_a] != [b is None for b in cots_b], "per sequence, the sides draw apart"


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora-dropout"])
def test_resume_reproduces_the_uninterrupted_run(tiny_backbone_dir, small_data, tmp_path, lora, capsys):
    """Stopped at a checkpoint inside an epoch (step 3 of 8 per epoch): the resumed run's losses and
    weights are the uninterrupted run's, with LoRA dropout drawing from the global generator too."""
    options = dict(max_steps=6, lora=lora, lora_rank=4, lora_dropout=0.3, eval_data=None)
    straight = train(config_for(tiny_backbone_dir, small_data, tmp_path / "straight", **options))
    interrupted = config_for(tiny_backbone_dir, small_data, tmp_path / "resumed", **options)
    first = train(interrupted, stop_after=3)
    assert first["step"] == 3 and (tmp_path / "resumed" / "checkpoint-3").is_dir()
    resumed = train(interrupted)
    assert resumed["step"] == 6 and len(resumed["history"]) == 6
    assert resumed["history"] == straight["history"]
    from safetensors.torch import load_file

    weights = [load_file(tmp_path / run / "checkpoint-6" / "trainable.safetensors") for run in ("straight", "resumed")]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    if lora:  # the same command once more: it says there is nothing left to do
        capsys.readouterr()
        assert train(interrupted)["step"] == 6 and "nothing to do" in capsys.readouterr().out
    assert not list((tmp_path / "resumed").glob(".checkpoint-*")), "no staging folders left"


def test_lora_trains_only_lora_head_and_reward_embedding(tiny_backbone_dir, small_data, tmp_path):
    config = config_for(tiny_backbone_dir, small_data, tmp_path / "lora", lora=True, lora_rank=4, max_steps=2)
    model = build_model(config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") or n == "reward_embedding" for n in trainable)
    assert not any("visual" in n for n in trainable)
    torch.manual_seed(0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    from descore_reward.training import cold_start

    state = train(config)
    final = cold_start.DeScoreModel.from_pretrained(tmp_path / "lora" / "final")
    after = dict(final.named_parameters())
    changed = {n for n in before if n in after and not torch.equal(before[n], after[n].detach())}
    assert "reward_embedding" in changed and any(n.startswith("head.") for n in changed)
    assert any("lora_B" in n for n in changed)
    assert all("lora_" in n or n.startswith("head.") or n == "reward_embedding" for n in changed), changed
    assert state["step"] == 2 and not (tmp_path / "lora" / "final" / "backbone").exists()


def test_bad_rows_stop_training_before_the_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "prompt": "x", "video_a": "a.mp4", "video_b": "b.mp4", "label": "C"}\n')
    config = ColdStartConfig(model=str(tmp_path / "no-such-model"), train_data=str(bad), output_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"bad.jsonl:1: label 'C'"):
        train(config)


def test_config_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "cold_start.yaml"
    path.write_text(yaml.safe_dump({"model": "m", "train_data": "t.jsonl", "output_dir": "out", "p_mask": 0.3}))
    config = load_config(ColdStartConfig, path, ["learning_rate=2e-5", "lora=false", "epochs=3"])
    assert (config.p_mask, config.learning_rate, config.lora, config.epochs) == (0.3, 2e-5, False, 3)
    path.write_text(yaml.safe_dump({"model": "m", "train_data": "t", "output_dir": "o", "p_maks": 0.3}))
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['p_maks'\]"):
        load_config(ColdStartConfig, path)
    with pytest.raises(ValueError, match="override 'epoch=3'"):
        load_config(ColdStartConfig, None, ["model=m", "train_data=t", "output_dir=o", "epoch=3"])
    with pytest.raises(ValueError, match="p_mask must lie in"):
        load_config(ColdStartConfig, None, ["model=m", "train_data=t", "output_dir=o", "p_mask=2"])


def test_a_full_fine_tune_trains_fp32_weights_that_all_reach_the_loss(tmp_path, small_data):
    """Only what reaches the loss trains (every trainable parameter gets a gradient; the gradient
    averaging expects the same set on every process) and fp32 master weights, from a backbone saved in bf16."""
    from descore_reward.data import PairCollator, read_jsonl
    from descore_reward.tiny import build_tiny_backbone
    from descore_reward.training.cold_start import pair_rewards

    backbone, processor = build_tiny_backbone(seed=0)
    backbone.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    processor.save_pretrained(tmp_path / "bf16")
    config = ColdStartConfig(
        model=str(tmp_path / "bf16"),
        train_data=str(small_data[0]),
        output_dir=str(tmp_path / "run"),
        lora=False,
        sampling=dataclasses.asdict(TINY_SAMPLING),
    )
    model = build_model(config)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())
    batch = PairCollator(model.config.sampling)(read_jsonl(small_data[0])[:2])
    reward_a, reward_b = pair_rewards(model, batch, [p.cot_a for p in batch.pairs], [None] * 2)
    (reward_a - reward_b).sum().backward()
    assert [n for n, p in trainable.items() if p.grad is None] == []


def test_accumulation_is_exact_or_refused():
    from descore_reward.training.cold_start import accumulation_steps

    assert accumulation_steps(32, 4, 2) == 4
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_steps(32, 4, 3)


def test_the_authors_recipe_keeps_its_trained_vision_tower_in_float32(tmp_path, small_data):
    """LoRA on the language model with the vision tower trained fully, from a backbone saved in bf16:
    every trained weight has a float32 master, and `final/` holds the trained tower, which reloads
    (differing from the base) and reaches stage 2's policy and its frozen reference."""
    from descore_reward.modeling import VISION_WEIGHTS_NAME, DeScoreModel
    from descore_reward.tiny import build_tiny_backbone
    from descore_reward.training.rl import RLConfig, prepare_policy

    backbone, processor = build_tiny_backbone(seed=0)
    backbone.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    processor.save_pretrained(tmp_path / "bf16")
    options = dict(lora=True, lora_rank=4, train_vision=True, max_steps=2, eval_data=None)
    config = config_for(tmp_path / "bf16", small_data, tmp_path / "run", **options)
    model = build_model(config)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any("visual" in n for n in trainable) and all(p.dtype == torch.float32 for p in trainable.values())
    base = {n: p.detach().float().clone() for n, p in model.language_backbone.visual.named_parameters()}
    train(dataclasses.replace(config, learning_rate=5e-2), model=model)
    trained = {n: p.detach().float().clone() for n, p in model.language_backbone.visual.named_parameters()}
    assert (tmp_path / "run" / "final" / VISION_WEIGHTS_NAME).is_file()

    reloaded = DeScoreModel.from_pretrained(tmp_path / "run" / "final", dtype=torch.float32)
    visual = dict(reloaded.language_backbone.visual.named_parameters())
    assert all(torch.equal(visual[n].float(), trained[n]) for n in trained), "the trained tower reloads"
    assert sum(not torch.equal(trained[n], base[n]) for n in base) > len(base) // 2, "and it trained"

    rl = RLConfig(
        model=str(tmp_path / "run" / "final"), train_data="unused", output_dir=str(tmp_path / "rl"), report_to=None
    )
    policy = prepare_policy(DeScoreModel.from_pretrained(rl.model, dtype=torch.float32, is_trainable=True), rl)
    policy_visual = dict(policy.language_backbone.visual.named_parameters())
    assert all(torch.equal(policy_visual[n].float(), trained[n]) for n in trained), "stage 2 starts from it"
    policy.save_pretrained(tmp_path / "stage2")
    again = DeScoreModel.from_pretrained(tmp_path / "stage2", dtype=torch.float32)
    again_visual = dict(again.language_backbone.visual.named_parameters())
    assert all(torch.equal(again_visual[n].float(), trained[n]) for n in trained), "and hands it on"


def test_an_output_folder_that_is_a_file_stops_training_before_the_model_loads(tmp_path, small_data):
    from descore_reward.errors import OutputFolderError

    (tmp_path / "taken").write_text("my notes")
    config = ColdStartConfig(
        model=str(tmp_path / "no-such-model"), train_data=str(small_data[0]), output_dir=str(tmp_path / "taken")
    )
    with pytest.raises(OutputFolderError, match="taken: exists and is not a folder"):
        train(config)
    assert (tmp_path / "taken").read_text() == "my notes"
