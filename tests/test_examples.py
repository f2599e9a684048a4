"""The example scripts and the commands they lead to, run as a user runs them (subprocesses), on the tiny models."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

EXAMPLES = Path(__file__).parents[1] / "examples"
SIZE = dict(height=32, width=32, num_frames=9)
DESCORE_TRAIN = ("-m", "descore_reward.cli", "train")  # the `descore train` command, in this interpreter


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def small_config(shipped: str, path: Path, **values) -> Path:
    """The shipped example config with the run made tiny: same keys, so a renamed key fails here."""
    config = yaml.safe_load((EXAMPLES / "configs" / shipped).read_text())
    assert set(values) <= set(config), set(values) - set(config)
    path.write_text(yaml.safe_dump({**config, **values}))
    return path


@pytest.mark.slow
def test_rank_pairs_then_train_wan_with_flow_dpo_and_grpo(tiny_model, tiny_wan_dir, tmp_path):
    descore = tmp_path / "descore"
    tiny_model.save_pretrained(descore, include_backbone=True)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square moves right\na blue circle stays still\n")
    labelled = run(
        str(EXAMPLES / "rank_dpo_pairs.py"),
        *("--descore", str(descore), "--pipeline", str(tiny_wan_dir), "--prompts", str(prompts)),
        *("--out", str(tmp_path / "pairs"), "--samples", "2", "--height", "32", "--width", "32", "--frames", "9"),
        *("--num-inference-steps", "2", "--guidance", "1.0"),
    )
    assert labelled.returncode == 0, labelled.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts.read_text().splitlines()

    common = dict(pipeline=str(tiny_wan_dir), steps=2, lora_rank=4, lora_alpha=8, mixed_precision="no")
    dpo = small_config(
        "flow_dpo_wan_1_3b.yaml",
        tmp_path / "dpo.yaml",
        pairs=str(tmp_path / "pairs" / "pairs.jsonl"),
        output_dir=str(tmp_path / "dpo"),
        latent_cache=str(tmp_path / "latents"),
        **common,
    )
    trained = run(*DESCORE_TRAIN, "flow-dpo", "--config", str(dpo), "learning_rate=1e-3")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "flow-dpo: 2 steps" in trained.stdout
    assert load_file(tmp_path / "dpo" / "final" / "pytorch_lora_weights.safetensors")

    grpo = small_config(
        "grpo_wan_1_3b.yaml",
        tmp_path / "grpo.yaml",
        output_dir=str(tmp_path / "grpo"),
        group_size=2,
        prompts_per_step=1,
        num_inference_steps=3,
        **SIZE,
        **common,
    )
    base = (*DESCORE_TRAIN, "wan-grpo", "--config", str(grpo), f"reward_model={descore}")
    no_prompts = run(*base)
    assert no_prompts.returncode != 0 and "no prompts" in no_prompts.stderr
    trained = run(*base, "--prompts", str(prompts))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "wan-grpo: 2 steps" in trained.stdout
    assert load_file(tmp_path / "grpo" / "final" / "pytorch_lora_weights.safetensors")


def test_every_shipped_training_config_loads():
    from descore_reward.training.cold_start import ColdStartConfig
    from descore_reward.training.config import load_config
    from descore_reward.training.rl import RLConfig
    from descore_reward.wan.flow_dpo import FlowDPOConfig
    from descore_reward.wan.grpo import WanGRPOConfig

    for name, cls in [
        ("flow_dpo_wan_1_3b.yaml", FlowDPOConfig),
        ("grpo_wan_1_3b.yaml", WanGRPOConfig),
        ("cold_start_qwen3_vl_8b.yaml", ColdStartConfig),
        ("cold_start_paper.yaml", ColdStartConfig),
        ("rl_qwen3_vl_8b.yaml", RLConfig),
        ("rl_paper.yaml", RLConfig),
    ]:
        load_config(cls, EXAMPLES / "configs" / name)
