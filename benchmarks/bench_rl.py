"""Stage-2 step cost, measured side by side in one run on the scoring benchmark's random Qwen3-VL.

Prints one dual-objective step split into rollout (vision + generation + rule rewards) and update
(old, reference and policy passes, backward, optimizer), the ratio of a dual-objective step to a
GRPO-only step (target <= 1.15), the ratio of the naive design that runs a separate scoring pass
for the BT loss, and the videos the vision tower encodes per step (must equal the unique videos).

    python benchmarks/bench_rl.py [--group-size 4] [--pairs 1] [--cot-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch
import transformers
from bench_scoring import SIZES

from descore_reward import DeScoreConfig, DeScoreModel, VideoSampling
from descore_reward.synthetic import make_dataset
from descore_reward.tiny import build_tiny_backbone
from descore_reward.training.rl import (
    RLConfig,
    bt_on_rollouts,
    policy_update,
    prepare_policy,
)
from descore_reward.training.rollouts import logprobs_and_rewards, sample_rollouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--cot-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    scratch_folder = tempfile.TemporaryDirectory()  # removed when the benchmark exits
    scratch = scratch_folder.name
    text, vision = SIZES["cpu"]
    build_tiny_backbone(f"{scratch}/backbone", text=text, vision=vision)
    sampling = VideoSampling(fps=2.0, max_pixels_per_frame=448 * 448)
    stage1 = DeScoreModel.from_backbone(f"{scratch}/backbone", DeScoreConfig(sampling=sampling), seed=0)
    stage1.save_pretrained(f"{scratch}/stage1", include_backbone=True)
    data = make_dataset(f"{scratch}/data", args.pairs, seed=0, frames=32, size=448, fps=16)
    config = RLConfig(
        model=f"{scratch}/stage1",
        train_data=str(data),
        output_dir=f"{scratch}/out",
        group_size=args.group_size,
        pairs_per_step=args.pairs,
        max_new_tokens=args.cot_tokens,
        masked_bt_coefficient=0.0,  # the paper's two terms; the masked term is timed on its own below
    )
    model = prepare_policy(DeScoreModel.from_pretrained(config.model, is_trainable=True), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    from descore_reward.data import read_jsonl

    pairs = read_jsonl(data)
    encoded = []
    model.language_backbone.visual.register_forward_pre_hook(
        lambda module, a, kw: encoded.append(len(kw["grid_thw"])), with_kwargs=True
    )
    grpo_only = dataclasses.replace(config, bt_coefficient=0.0)
    with_masked_bt = dataclasses.replace(config, masked_bt_coefficient=0.005)

    def naive_update(rollouts) -> None:
        """GRPO update, then a separate scoring forward/backward for the BT loss."""
        policy_update(model, optimizer, rollouts, grpo_only)
        rewards = logprobs_and_rewards(model, rollouts)[1]
        (config.bt_coefficient * bt_on_rollouts(rewards, rollouts.labels)[0]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = {name: [] for name in ("rollout", "dual update", "GRPO-only update", "naive dual update", "+ masked BT")}
    vision_calls = []
    for repeat in range(args.repeats + 1):  # the first round warms up
        torch.manual_seed(repeat)
        encoded.clear()
        start = time.perf_counter()
        model.eval()
        rollouts = sample_rollouts(model, pairs, config)
        rollout_time = time.perf_counter() - start
        model.train()
        round_times = {"rollout": rollout_time}
        for name, update in (
            ("dual update", lambda r: policy_update(model, optimizer, r, config)),
            ("GRPO-only update", lambda r: policy_update(model, optimizer, r, grpo_only)),
            ("naive dual update", naive_update),
            ("+ masked BT", lambda r: policy_update(model, optimizer, r, with_masked_bt)),
        ):
            start = time.perf_counter()
            update(rollouts)
            round_times[name] = time.perf_counter() - start
        if repeat:
            for name, value in round_times.items():
                times[name].append(value)
            vision_calls.append(sum(encoded))
    t = {name: statistics.median(values) for name, values in times.items()}
    tokens = int(rollouts.response_mask.sum())
    print(
        f"CPU threads {torch.get_num_threads()}, {len(rollouts.texts)} rollouts ({args.pairs} pairs x 2 videos x "
        f"group {args.group_size}), {tokens} CoT tokens, prompt {rollouts.prompt_length} tokens"
    )
    for name, value in t.items():
        print(f"  {name:18s} median {value:7.2f} s")
    dual, grpo = t["rollout"] + t["dual update"], t["rollout"] + t["GRPO-only update"]
    naive = t["rollout"] + t["naive dual update"]
    print(f"dual-objective step / GRPO-only step: {dual / grpo:.3f}   (target <= 1.15)")
    print(f"naive dual step (separate scoring pass) / GRPO-only step: {naive / grpo:.3f}")
    masked = t["rollout"] + t["+ masked BT"]
    print(f"dual + masked-BT step / dual step: {masked / dual:.3f}   (the masked term's extra prefill)")
    print(f"videos encoded by the vision tower per step: {vision_calls} (unique videos: {2 * len(pairs)})")


if __name__ == "__main__":
    main()
