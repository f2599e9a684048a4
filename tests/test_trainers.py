"""What the four trainers share (`training/run.py`): the config base, the `train(config, model=None, ...)`
signature, the artefacts, state and logged metrics, exact resume, the checkpoints and the data order."""

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from descore_reward.synthetic import make_dataset
from descore_reward.training import cold_start, rl
from descore_reward.training.checkpoint import resume, save_checkpoint
from descore_reward.training.config import TrainerConfig
from descore_reward.wan import flow_dpo, grpo
from descore_reward.wan.flow_dpo import rank_dpo_pairs
from descore_reward.wan.generation import WanSampling

from .conftest import load_wan

TRAINERS = [
    (cold_start, cold_start.ColdStartConfig),
    (rl, rl.RLConfig),
    (flow_dpo, flow_dpo.FlowDPOConfig),
    (grpo, grpo.WanGRPOConfig),
]


def brightness(videos, prompts, metadata=None):
    """A deterministic stand-in reward for the Wan trainers: mean brightness of each video."""
    from descore_reward.video import load_video

    frames = [load_video(v).frames.float() if isinstance(v, (str, Path)) else v.float() for v in videos]
    return np.asarray([float(f.mean()) for f in frames], dtype=np.float32), {}


@pytest.fixture(scope="module")
def trainer_inputs(tiny_model, tiny_wan_dir, tmp_path_factory):
    """What each trainer reads: a stage-1 checkpoint, pairs with sub-scores, Flow-DPO pairs."""
    folder = tmp_path_factory.mktemp("trainers")
    tiny_model.save_pretrained(folder / "stage1", include_backbone=True)
    data, held_out = make_dataset(folder / "data", 4, seed=0), make_dataset(folder / "data", 2, seed=1, name="e.jsonl")
    pipeline = load_wan(tiny_wan_dir)
    sampling = WanSampling(height=32, width=32, num_frames=9, num_inference_steps=2, guidance_scale=1.0)
    pairs = rank_dpo_pairs(
        brightness, ["a red square", "a blue circle"], folder / "dpo", pipeline, 2, sampling=sampling
    )
    return {"stage1": folder / "stage1", "data": data, "held_out": held_out, "wan": tiny_wan_dir, "dpo_pairs": pairs}


def contract_run(name: str, inputs: dict, output_dir: Path, stop_after: int | None = None) -> dict:
    """Trainer `name` for two steps (or until `stop_after`) on the tiny models, logging to TensorBoard."""
    common = dict(output_dir=str(output_dir), seed=3, save_every=100, report_to="tensorboard", learning_rate=1e-3)
    if name == "cold_start":
        config = cold_start.ColdStartConfig(
            model=str(inputs["stage1"]), train_data=str(inputs["data"]), eval_data=str(inputs["held_out"]),
            lora_rank=4, lora_dropout=0.3, batch_size=2, micro_batch_size=1, max_steps=2, eval_every=1, log_every=1,
            **common,
        )  # fmt: skip
        return cold_start.train(config, stop_after=stop_after)
    if name == "rl":
        config = rl.RLConfig(
            model=str(inputs["stage1"]), train_data=str(inputs["data"]), eval_data=str(inputs["held_out"]),
            group_size=2, pairs_per_step=1, steps=2, max_new_tokens=4, lora_rank=4, eval_every=1, **common,
        )  # fmt: skip
        return rl.train(config, stop_after=stop_after)
    wan = dict(pipeline=str(inputs["wan"]), steps=2, lora_rank=4, lora_alpha=8, **common)
    if name == "flow_dpo":
        return flow_dpo.train(flow_dpo.FlowDPOConfig(pairs=str(inputs["dpo_pairs"]), **wan), stop_after=stop_after)
    config = grpo.WanGRPOConfig(
        prompts=["a red square", "a blue circle"], group_size=2, prompts_per_step=1, num_inference_steps=3,
        height=32, width=32, num_frames=9, **wan,
    )  # fmt: skip
    return grpo.train(config, reward_fn=brightness, stop_after=stop_after)


METRICS = {
    "cold_start": {"loss", "learning_rate"},
    "rl": {"loss", "grpo_loss", "bt_loss", "kl", "clip_fraction", "rollout_reward", "format_rate"},
    "flow_dpo": {"loss"},
    "wan_grpo": {"loss", "reward", "kl", "clip_fraction"},
}


def logged_tags(output_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in output_dir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


@pytest.mark.parametrize("name", list(METRICS))
def test_every_trainer_keeps_one_contract(name, trainer_inputs, tmp_path):
    """Two steps of each trainer: the same artefacts, state layout and logged metrics, and a run stopped
    after step 1 and resumed ends exactly where the uninterrupted run does."""
    module, config_class = dict(zip(METRICS, TRAINERS))[name]
    assert issubclass(config_class, TrainerConfig)
    parameters = inspect.signature(module.train).parameters
    assert list(parameters)[:2] == ["config", "model"] and parameters["model"].default is None
    assert "stop_after" in parameters

    straight = contract_run(name, trainer_inputs, tmp_path / "straight")
    out = tmp_path / "straight"
    assert {"checkpoint-2", "final", "trainer_state.json", "training_curves.png"} <= {p.name for p in out.iterdir()}
    assert any((out / "final").iterdir()), "the trained result"
    assert json.loads((out / "trainer_state.json").read_text()) == straight
    assert {"step", "history", "evaluations"} <= set(straight) and straight["step"] == 2
    assert [row["step"] for row in straight["history"]] == [1, 2]
    for row in straight["history"]:
        assert METRICS[name] <= set(row), set(row)
        assert all(math.isfinite(row[metric]) for metric in METRICS[name]), row
    evaluated = name in ("cold_start", "rl")
    assert [row["step"] for row in straight["evaluations"]] == ([0, 1, 2] if evaluated else [])
    tags = logged_tags(out)
    assert {f"train/{metric}" for metric in METRICS[name]} <= tags, tags
    assert evaluated == any(tag.startswith("eval/") for tag in tags)
    if evaluated:  # a DeScore checkpoint's model card names this stage, its data, steps and evaluation
        card = (out / "final" / "README.md").read_text()
        stage = {"cold_start": "cold start", "rl": "dual-objective RL"}[name]
        assert f"| {stage} |" in card and "| 2 |" in card and "## Held-out evaluation" in card, card

    first = contract_run(name, trainer_inputs, tmp_path / "resumed", stop_after=1)
    assert first["step"] == 1 and not (tmp_path / "resumed" / "final").exists()
    resumed = contract_run(name, trainer_inputs, tmp_path / "resumed")
    assert resumed["step"] == 2 and len(resumed["history"]) == 2
    for a, b in zip(straight["history"], resumed["history"]):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6, nan_ok=True)
    weights = [load_file(tmp_path / run / "checkpoint-2" / "trainable.safetensors") for run in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-5, atol=1e-6)


def test_checkpoints_resume_the_newest_and_refuse_a_changed_model(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    assert resume(tmp_path, model, optimizer) is None
    for step in (1, 2, 3):
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        save_checkpoint(tmp_path, model, optimizer, {"step": step}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    trained = model.weight.detach().clone()
    fresh = torch.nn.Linear(3, 2)
    assert resume(tmp_path, fresh, torch.optim.AdamW(fresh.parameters(), lr=0.1)) == {"step": 3}
    torch.testing.assert_close(fresh.weight, trained)

    torch.save(optimizer.state_dict(), tmp_path / "checkpoint-3" / "optimizer.pt")  # the format before names
    older = torch.nn.Linear(3, 2)
    older_optimizer = torch.optim.AdamW(older.parameters(), lr=0.1)
    assert resume(tmp_path, older, older_optimizer) == {"step": 3}
    assert older_optimizer.state_dict()["state"][0]["step"] == 3

    wider = torch.nn.Sequential(torch.nn.Linear(3, 2))  # the same weights under other names
    with pytest.raises(ValueError, match=r"checkpoint-3: checkpoint lacks trainable parameters"):
        resume(tmp_path, wider, torch.optim.AdamW(wider.parameters()))
    frozen_bias = torch.nn.Linear(3, 2)
    frozen_bias.bias.requires_grad_(False)
    with pytest.raises(ValueError, match=r"holds parameters the model does not train \['bias'\]"):
        resume(tmp_path, frozen_bias, torch.optim.AdamW([frozen_bias.weight]))


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_epoch_batches_never_repeat_inside_an_epoch_nor_across_processes(processes):
    from descore_reward.training.distributed import epoch_batch

    count, per_step = 23, 3
    steps_per_epoch = (count // processes) // per_step
    for epoch in range(2):
        drawn = [
            epoch_batch(count, epoch * steps_per_epoch + step, per_step, 0, rank, processes)
            for rank in range(processes)
            for step in range(steps_per_epoch)
        ]
        flat = [i for batch in drawn for i in batch]
        assert all(len(batch) == per_step for batch in drawn)
        assert len(flat) == len(set(flat)) == processes * steps_per_epoch * per_step, "no repeats in an epoch"
    first, second = (epoch_batch(count, s * steps_per_epoch, per_step, 0, 0, processes) for s in (0, 1))
    assert first != second, "each epoch is shuffled anew"
    assert epoch_batch(count, 5, per_step, 0, 0, processes) == epoch_batch(count, 5, per_step, 0, 0, processes)
    assert epoch_batch(2, 0, 8, 0, 0, 1) in ([0, 1], [1, 0]), "a small set is taken whole"


def test_a_renamed_config_key_still_loads_with_a_warning(tmp_path):
    from descore_reward.training.config import load_config

    path = tmp_path / "rl.yaml"
    path.write_text("model: m\ntrain_data: t\noutput_dir: o\nupdates_per_batch: 3\n")
    with pytest.warns(FutureWarning, match="'updates_per_batch' is now 'passes_per_batch'"):
        config = load_config(rl.RLConfig, path)
    assert config.passes_per_batch == 3
    with pytest.warns(FutureWarning):
        assert load_config(rl.RLConfig, path, ["updates_per_batch=2"]).passes_per_batch == 2
    assert "updates_per_batch" in grpo.WanGRPOConfig.__dataclass_fields__, "Wan GRPO's own meaning"


@pytest.mark.parametrize(
    "override, message",
    [
        ("learning_rate=-1", "'learning_rate': expected a number above 0"),
        ("max_grad_norm=-1", "'max_grad_norm': expected a number above 0"),
        ("kl_beta=.nan", "'kl_beta': expected a finite number"),
        ("bt_coefficient=-0.1", "'bt_coefficient': expected a number of at least 0"),
        ("log_every=0", "'log_every': expected at least 1"),
        ("eval_every=-2", "'eval_every': expected at least 1"),
        ("steps=0", "'steps': expected at least 1"),
        ("lora=maybe", "'lora': expected true or false"),
        ("group_size=2.5", "'group_size': expected an integer"),
        ("learning_rate=fast", "'learning_rate': expected a number"),
    ],
)
def test_config_values_that_cannot_train_are_named_before_any_work(tmp_path, override, message):
    from descore_reward.training.config import load_config

    path = tmp_path / "rl.yaml"
    path.write_text("model: m\ntrain_data: t\noutput_dir: o\n")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_config(rl.RLConfig, path, [override])


def test_yaml_booleans_and_nested_sections_are_read_as_meant(tmp_path):
    from descore_reward.training.config import load_config

    path = tmp_path / "cold_start.yaml"
    path.write_text("model: m\ntrain_data: t\noutput_dir: o\nreport_to: null\n")
    assert load_config(cold_start.ColdStartConfig, path, ["mixed_precision=no"]).mixed_precision == "no"
    assert load_config(cold_start.ColdStartConfig, path, ["report_to=null"]).report_to is None
    path.write_text("model: m\ntrain_data: t\noutput_dir: o\nmixed_precision: no\n")
    with pytest.raises(ValueError, match="'mixed_precision': expected a string .*quote it"):
        load_config(cold_start.ColdStartConfig, path)
    for sampling, message in (("{fsp: 2}", r"unknown key\(s\) \['fsp'\]"), ("{fps: -1}", "fps and input_fps")):
        path.write_text(f"model: m\ntrain_data: t\noutput_dir: o\nsampling: {sampling}\n")
        with pytest.raises(ValueError, match=message):
            load_config(cold_start.ColdStartConfig, path)
    for epochs in (0, -1):
        with pytest.raises(ValueError, match="'epochs': expected at least 1"):
            cold_start.ColdStartConfig(model="m", train_data="t", output_dir="o", epochs=epochs)
