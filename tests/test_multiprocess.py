"""Several processes: the four trainers (cold start, stage-2 RL, Flow-DPO, Wan GRPO) run under
`torchrun` on two CPU processes, data parallel, FSDP2 and (where DeepSpeed is installed) ZeRO-3, by the shipped
accelerate configs, and must end with the same weights on both (gradients averaged).

Cold start's two processes split one global batch, so their gradient and update must equal a
one-process run's on the same batch (CoT masking and LoRA dropout off, the two draws that depend on
the process): a sum in place of a mean, or a halved effective batch, fails that. The other three
draw their own prompts and rollouts per process, which one process cannot replay, so their weights
must differ from a one-process run's (the second process's data counted)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from descore_reward.errors import DeScoreInputError
from descore_reward.modeling import DeScoreConfig, DeScoreModel
from descore_reward.synthetic import make_dataset
from descore_reward.training.sharding import DATA_PARALLEL, FSDP2, ZERO3, sharding_of
from descore_reward.wan.flow_dpo import rank_dpo_pairs
from descore_reward.wan.generation import WanSampling

from .conftest import TINY_SAMPLING, load_wan
from .multiprocess_trainers import train_all

SIZE = dict(height=32, width=32, num_frames=9)
CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
# ZeRO-3 where DeepSpeed is installed (`.ci/run` has a step for it: DESCORE_REQUIRE_DEEPSPEED makes its absence
# a failure there); the README's test command runs without it, since transformers imports it in every process.
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
if os.environ.get("DESCORE_REQUIRE_DEEPSPEED"):
    assert HAS_DEEPSPEED, "DESCORE_REQUIRE_DEEPSPEED is set, and DeepSpeed is not installed"
SHARDED = {"fsdp2": "accelerate_fsdp2.yaml", **({"zero3": "accelerate_zero3.yaml"} if HAS_DEEPSPEED else {})}


def spec(stage1, data, wan, pairs, out: Path, held_out=None) -> dict:
    common = dict(steps=2, report_to=None, save_every=100)
    runs = {
        "results": str(out),
        "cold_start": dict(
            model=str(stage1),
            train_data=str(data),
            output_dir=str(out / "cold_start"),
            batch_size=4,
            micro_batch_size=1,
            max_steps=1,
            p_mask=0.0,
            lora_dropout=0.0,
            learning_rate=1e-3,
            eval_every=100,
            report_to=None,
            save_every=100,
        ),
        "rl": dict(
            model=str(stage1),
            train_data=str(data),
            output_dir=str(out / "rl"),
            group_size=2,
            pairs_per_step=1,
            max_new_tokens=6,
            learning_rate=1e-2,
            eval_data=str(held_out) if held_out else None,  # think and fast scoring, before and after
            eval_every=100,
            **common,
        ),
        "flow_dpo": dict(
            pipeline=str(wan),
            pairs=str(pairs),
            output_dir=str(out / "flow_dpo"),
            learning_rate=1e-2,
            lora_rank=4,
            lora_alpha=8,
            **common,
        ),
        "grpo": dict(
            pipeline=str(wan),
            output_dir=str(out / "grpo"),
            prompts=["a red square", "a blue circle", "a green square"],
            group_size=2,
            prompts_per_step=1,
            num_inference_steps=3,
            learning_rate=1e-2,
            lora_rank=4,
            lora_alpha=8,
            **common,
            **SIZE,
        ),
    }
    for name, learning_rate in (("cold_start", 1e-3), ("rl", 1e-4)):  # the DeScore stages as full fine-tunes
        full = {**runs[name], "lora": False, "learning_rate": learning_rate, "output_dir": str(out / f"{name}_full")}
        runs[f"{name}_full"] = full
    return runs


def file_brightness(paths, prompts, metadata=None):
    from descore_reward.video import load_video

    return [float(load_video(p).frames.float().mean()) for p in paths], {}


def check_the_same_step(one: dict, two: dict, learning_rate: float) -> None:
    """The two-process gradient equals the one-process gradient (a sum in place of a mean is 2x off;
    AdamW's update alone would hide that), and so does the update, compared where it is determined.

    Two processes add the gradient in another order than one, so elements agree to the last bits only.
    AdamW's first step moves a weight by about `learning_rate * g / |g|`: where `|g|` is far above that
    noise the update is the same to 1e-6, but an element whose gradient is near 0 may move by
    +-learning_rate on either side, whatever the machine. Those are held to the bound of one step."""
    determined = 0
    for index, gradient in one["cold_start_gradients"].items():
        other_gradient = two["cold_start_gradients"][index]
        torch.testing.assert_close(other_gradient, gradient, atol=1e-6, rtol=1e-4, msg=f"gradient {index}")
        update, other = one["cold_start_update"][index], two["cold_start_update"][index]
        stable = gradient.abs() > 1e-4
        torch.testing.assert_close(other[stable], update[stable], atol=1e-6, rtol=1e-4, msg=f"update {index}")
        assert float((other - update).abs().max()) <= 2.5 * learning_rate, index
        determined += int(stable.sum())
    assert determined > 100, "enough of the update is determined to compare"


def launcher_environment(config_file: Path) -> dict[str, str]:
    """What `accelerate launch --config_file` tells the trainers about sharding, as environment variables
    (on the CPU accelerate runs FSDP and DeepSpeed configs as multi-CPU, and the trainers read these)."""
    config = yaml.safe_load(config_file.read_text())
    if config["distributed_type"] == "FSDP":
        return {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": str(config["fsdp_config"]["fsdp_version"])}
    if config["distributed_type"] == "DEEPSPEED":
        stage = str(config["deepspeed_config"]["zero_stage"])
        return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": stage}
    return {}


def two_processes(spec_file: Path, extra_env: dict) -> list[dict]:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **extra_env}
    script = Path(__file__).with_name("multiprocess_trainers.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    completed = subprocess.run([*command, str(script), str(spec_file)], env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-6000:]
    results = json.loads(spec_file.read_text())["results"]
    return [torch.load(Path(results) / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def assert_same_training(one: dict, other: dict, learning_rate: float, steps: int, what: str) -> None:
    """Two runs' weights agree where reduction order cannot move them: AdamW moves a weight whose gradient
    is near 0 by up to +-learning_rate per step whatever the machine, so every element is held to that
    bound and nearly all of them to 1e-6."""
    close, total = 0, 0
    for name, weight in one.items():
        difference = (other[name] - weight).abs()
        assert float(difference.max()) <= 2.5 * learning_rate * steps, f"{what} {name}"
        close += int((difference <= 1e-6 + 1e-4 * weight.abs()).sum())
        total += weight.numel()
    assert close >= 0.95 * total, f"{what}: only {close} of {total} weights agree"


@pytest.fixture(scope="module")
def runs(tiny_backbone_dir, tiny_wan_dir, tmp_path_factory) -> dict:
    """The trainers on one process, and on two under data parallel and under FSDP2 (the shipped configs)."""
    root = tmp_path_factory.mktemp("multiprocess")
    model = DeScoreModel.from_backbone(tiny_backbone_dir, DeScoreConfig(sampling=TINY_SAMPLING), seed=0)
    model.save_pretrained(root / "stage1", include_backbone=True)
    data = make_dataset(root / "data", 8, seed=0)
    held_out = make_dataset(root / "held_out", 2, seed=1)
    pairs = rank_dpo_pairs(
        file_brightness,
        ["a red square", "a blue circle", "a green square"],
        root / "pairs",
        pipeline=load_wan(tiny_wan_dir),
        samples_per_prompt=2,
        sampling=WanSampling(num_inference_steps=2, guidance_scale=1.0, **SIZE),
    )
    assert len(pairs.read_text().splitlines()) == 3
    runs = {}
    for name in ("one", "data_parallel", *SHARDED):
        (root / name).mkdir()
        runs[f"{name}_spec"] = spec(root / "stage1", data, tiny_wan_dir, pairs, root / name, held_out)
        runs[f"{name}_spec"]["resume"] = name in SHARDED
    runs["one"] = train_all(runs["one_spec"])
    for name, config in (("data_parallel", "accelerate_ddp.yaml"), *SHARDED.items()):
        spec_file = root / f"{name}.json"
        spec_file.write_text(json.dumps(runs[f"{name}_spec"]))
        runs[name] = two_processes(spec_file, launcher_environment(CONFIGS / config))
    return runs


@pytest.mark.slow
def test_two_processes_average_their_gradients(runs):
    one, ranks = runs["one"], runs["data_parallel"]
    for trainer in ("cold_start", "rl", "flow_dpo", "grpo"):
        assert ranks[0][trainer].keys() == ranks[1][trainer].keys() == one[trainer].keys()
        for name, weight in ranks[0][trainer].items():
            torch.testing.assert_close(ranks[1][trainer][name], weight, msg=f"{trainer} {name}: ranks disagree")
        if trainer == "cold_start":  # one global batch split over two processes: the same gradient and update
            check_the_same_step(one, ranks[0], learning_rate=1e-3)
            assert any(w.abs().sum() > 0 for n, w in one[trainer].items() if "lora_B" in n), "LoRA trained"
            continue
        moved = [not torch.allclose(ranks[0][trainer][n], one[trainer][n], atol=1e-7) for n in one[trainer]]
        assert any(moved), f"{trainer}: two processes trained exactly as one; the second's data did not count"


@pytest.mark.slow
@pytest.mark.parametrize(
    "sharding",
    ["fsdp2", pytest.param("zero3", marks=pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed"))],
)
def test_sharded_trains_as_one_process_and_as_data_parallel(runs, sharding):
    """Under FSDP2 and ZeRO-3 (the shipped accelerate configs) cold start's step equals a one-process run's
    on the same global batch, LoRA and full fine-tune; stage 2 (LoRA and full, a sharded frozen reference)
    and both Wan trainers, which draw per process, end where data parallel does with the same draws."""
    one, parallel, sharded = runs["one"], runs["data_parallel"], runs[sharding]
    for trainer in ("cold_start", "cold_start_full", "rl", "rl_full", "flow_dpo", "grpo"):
        assert sharded[0][trainer].keys() == sharded[1][trainer].keys() == one[trainer].keys(), trainer
        for name, weight in sharded[0][trainer].items():
            torch.testing.assert_close(sharded[1][trainer][name], weight, msg=f"{trainer} {name}: ranks disagree")
    check_the_same_step(one, sharded[0], learning_rate=1e-3)
    assert_same_training(one["cold_start_full"], sharded[0]["cold_start_full"], 1e-3, 1, "full cold start")
    for trainer, learning_rate in (("rl", 1e-2), ("rl_full", 1e-4), ("flow_dpo", 1e-2), ("grpo", 1e-2)):
        assert_same_training(parallel[0][trainer], sharded[0][trainer], learning_rate, 2, trainer)
    assert sharded[0]["rl_full_history"][0]["kl"] == 0.0, "the frozen reference is the policy before its update"
    evaluations = sharded[0]["rl_evaluations"]  # greedy CoTs and scores: generation and scoring when sharded
    assert [row["step"] for row in evaluations] == [0, 2]
    assert evaluations[0] == parallel[0]["rl_evaluations"][0], "the same model scores the same before training"
    for trainer in ("rl", "rl_full"):  # killed after step 1 and resumed: where the uninterrupted run ends
        for name, weight in sharded[0][trainer].items():
            assert torch.equal(sharded[0][f"{trainer}_resumed"][name], weight), f"{trainer} resumed: {name}"
    final = runs[f"{sharding}_spec"]["rl_full"]["output_dir"] + "/final"  # an ordinary checkpoint, on one process
    loaded = DeScoreModel.from_pretrained(final)
    for name, weight in sharded[0]["rl_full"].items():
        torch.testing.assert_close(dict(loaded.named_parameters())[name], weight, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(
    ("launched_as", "environment", "expected"),
    [
        ("NO", {}, DATA_PARALLEL),
        ("NO", {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, FSDP2),
        ("NO", {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "fsdp_version: 2"),
        (
            "NO",
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            ZERO3 if HAS_DEEPSPEED else "pip install 'descore-reward\\[deepspeed\\]'",
        ),
        ("NO", {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, "zero_stage: 3"),
        ("MEGATRON_LM", {}, "accelerate_zero3.yaml"),
    ],
)
def test_the_launch_config_chooses_the_sharding(monkeypatch, launched_as, environment, expected):
    """What `accelerate launch` says (its distributed type, or its variables as on the CPU) picks the way; a
    way the trainers do not run is refused with the setting to change."""
    from accelerate.utils import DistributedType

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    launched = SimpleNamespace(distributed_type=DistributedType[launched_as], state=SimpleNamespace())
    if expected in (DATA_PARALLEL, FSDP2, ZERO3):
        assert sharding_of(launched) == expected
    else:
        with pytest.raises(DeScoreInputError, match=expected):
            sharding_of(launched)
