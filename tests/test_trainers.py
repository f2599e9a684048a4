"""What the four trainers share: the config base, the `train(config, model=None, ...)` signature and
the checkpoints."""

import inspect

import pytest
import torch

from descore_reward.checkpoint import resume, save_checkpoint
from descore_reward.config import TrainerConfig
from descore_reward.integrations import flow_dpo, longcat_grpo
from descore_reward.training import cold_start, rl

TRAINERS = [
    (cold_start, cold_start.ColdStartConfig),
    (rl, rl.RLConfig),
    (flow_dpo, flow_dpo.FlowDPOConfig),
    (longcat_grpo, longcat_grpo.LongcatGRPOConfig),
]


@pytest.mark.parametrize("module, config", TRAINERS, ids=lambda x: getattr(x, "__name__", ""))
def test_every_trainer_has_one_shape(module, config):
    assert issubclass(config, TrainerConfig)
    parameters = inspect.signature(module.train).parameters
    assert list(parameters)[:2] == ["config", "model"] and parameters["model"].default is None
    assert "stop_after" in parameters


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

    wider = torch.nn.Sequential(torch.nn.Linear(3, 2))  # the same weights under other names
    with pytest.raises(ValueError, match=r"checkpoint-3: checkpoint lacks trainable parameters"):
        resume(tmp_path, wider, torch.optim.AdamW(wider.parameters()))
    frozen_bias = torch.nn.Linear(3, 2)
    frozen_bias.bias.requires_grad_(False)
    with pytest.raises(ValueError, match=r"holds parameters the model does not train \['bias'\]"):
        resume(tmp_path, frozen_bias, torch.optim.AdamW([frozen_bias.weight]))


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_epoch_batches_never_repeat_inside_an_epoch_nor_across_processes(processes):
    from descore_reward.distributed import epoch_batch

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
    from descore_reward.config import load_config

    path = tmp_path / "rl.yaml"
    path.write_text("model: m\ntrain_data: t\noutput_dir: o\nupdates_per_batch: 3\n")
    with pytest.warns(FutureWarning, match="'updates_per_batch' is now 'passes_per_batch'"):
        config = load_config(rl.RLConfig, path)
    assert config.passes_per_batch == 3
    with pytest.warns(FutureWarning):
        assert load_config(rl.RLConfig, path, ["updates_per_batch=2"]).passes_per_batch == 2
    assert "updates_per_batch" in longcat_grpo.LongcatGRPOConfig.__dataclass_fields__, "Wan GRPO's own meaning"


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
    from descore_reward.config import load_config

    path = tmp_path / "rl.yaml"
    path.write_text("model: m\ntrain_data: t\noutput_dir: o\n")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_config(rl.RLConfig, path, [override])


def test_yaml_booleans_and_nested_sections_are_read_as_meant(tmp_path):
    from descore_reward.config import load_config

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
