"""Several processes: the four trainers (cold start, stage-2 RL, Flow-DPO, Longcat GRPO) run under
`torchrun` on two CPU processes, and must end with the same weights on both (gradients averaged).

Cold start's two processes split one global batch, so their gradient and update must equal a
one-process run's on the same batch (CoT masking and LoRA dropout off, the two draws that depend on
the process): a sum in place of a mean, or a halved effective batch, fails that. The other three
draw their own prompts and rollouts per process, which one process cannot replay, so their weights
must differ from a one-process run's (the second process's data counted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from descore_reward.synthetic import make_dataset
from descore_reward.wan.flow_dpo import rank_dpo_pairs
from descore_reward.wan.generation import WanSampling

from .conftest import load_wan
from .multiprocess_trainers import train_all

SIZE = dict(height=32, width=32, num_frames=9)


def spec(stage1, data, wan, pairs, out: Path) -> dict:
    common = dict(steps=2, report_to=None, save_every=100)
    return {
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


@pytest.mark.slow
def test_two_processes_average_their_gradients(tiny_model, tiny_wan_dir, tmp_path):
    tiny_model.save_pretrained(tmp_path / "stage1", include_backbone=True)
    data = make_dataset(tmp_path / "data", 8, seed=0)
    pairs = rank_dpo_pairs(
        file_brightness,
        ["a red square", "a blue circle", "a green square"],
        tmp_path / "pairs",
        pipeline=load_wan(tiny_wan_dir),
        samples_per_prompt=2,
        sampling=WanSampling(num_inference_steps=2, guidance_scale=1.0, **SIZE),
    )
    assert len(pairs.read_text().splitlines()) == 3
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = train_all(spec(tmp_path / "stage1", data, tiny_wan_dir, pairs, tmp_path / "one"))
    spec_file = tmp_path / "two.json"
    spec_file.write_text(json.dumps(spec(tmp_path / "stage1", data, tiny_wan_dir, pairs, tmp_path / "two")))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    script = Path(__file__).with_name("multiprocess_trainers.py")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(spec_file),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-6000:]
    ranks = [torch.load(tmp_path / "two" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
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
