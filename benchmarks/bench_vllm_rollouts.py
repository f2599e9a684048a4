"""One stage-2 step with rollouts on a colocated vLLM engine against rollouts on HF `generate`, side by side
in one run on the same model and batch, split into its parts: the rollouts, the old-policy and reference
passes, the update, and (vLLM) writing the updated weights into the engine.

Random Qwen3-VL (text hidden 512 x 8 layers, head dim 64; vision 128 x 2), LoRA stage 1, `--pairs` pairs x
2 videos x `--group-size` rollouts of up to `--cot-tokens` tokens at temperature 1, float32. Run it in the
vLLM environment (`.ci/vllm_env.sh DIR`):

    VLLM_CPU_KVCACHE_SPACE=4 python benchmarks/bench_vllm_rollouts.py
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from descore_reward.data import read_pairs
from descore_reward.modeling import DeScoreConfig, DeScoreModel
from descore_reward.synthetic import make_dataset
from descore_reward.tiny import CPU_BENCHMARK_TEXT, build_tiny_backbone
from descore_reward.training import rl
from descore_reward.training.rollouts import sample_rollouts
from descore_reward.training.vllm_rollouts import VLLMRollouts
from descore_reward.video import VideoSampling

VISION = dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, deepstack_visual_indexes=[0, 1])
# vLLM's CPU build fails on seeded sampling when a prompt's prefill is split over steps ("CPU Generator does not
# use offset"): one step takes every prompt of the batch. CUDA generators have no such limit.
CPU_ENGINE = {
    "distributed_executor_backend": "uni",
    "enforce_eager": True,
    "dtype": "float32",
    "max_model_len": 4096,
    "max_num_batched_tokens": 65536,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--cot-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    transformers.utils.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        build_tiny_backbone(root / "backbone", text=CPU_BENCHMARK_TEXT, vision=VISION)
        sampling = VideoSampling(fps=4.0, max_pixels_per_frame=128 * 128)
        stage1 = DeScoreModel.from_backbone(root / "backbone", DeScoreConfig(sampling=sampling), seed=0)
        stage1.add_lora(rank=16)
        stage1.save_pretrained(root / "stage1")
        data = make_dataset(root / "data", args.pairs, seed=0, tie_rate=0.0, frames=16, size=128)
        config = rl.RLConfig(
            model=str(root / "stage1"),
            train_data=str(data),
            output_dir=str(root / "out"),
            group_size=args.group_size,
            pairs_per_step=args.pairs,
            max_new_tokens=args.cot_tokens,
            learning_rate=1e-5,
            report_to=None,
        )
        pairs = read_pairs(data)
        model = rl.prepare_policy(DeScoreModel.from_pretrained(config.model, is_trainable=True), config)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
        engine = VLLMRollouts(config.model, **CPU_ENGINE)
        engine.sync(model)
        parts = ("rollouts", "old + reference", "update", "sync")
        times = {way: {part: [] for part in parts} for way in ("hf", "vllm")}
        tokens = {"hf": [], "vllm": []}
        for repeat in range(args.repeats + 1):  # the first round warms up
            for way in ("hf", "vllm"):
                torch.manual_seed(repeat)
                clock = [time.perf_counter()]
                model.eval()
                if way == "hf":
                    rollouts = sample_rollouts(model, pairs, config)
                else:
                    rollouts = engine.sample(model, pairs, config, seed=repeat)
                clock.append(time.perf_counter())
                model.train()
                with torch.no_grad():  # what the update computes first, timed on its own
                    rl.policy_logprobs(model, rollouts), rl.reference_logprobs(model, None, rollouts)
                clock.append(time.perf_counter())
                rl.policy_update(model, optimizer, rollouts, config)
                clock.append(time.perf_counter())
                if way == "vllm":
                    engine.sync(model)
                clock.append(time.perf_counter())
                if repeat:
                    rollout_time, passes, update, sync = (b - a for a, b in zip(clock, clock[1:]))
                    for part, value in zip(parts, (rollout_time, passes, update - passes, sync)):
                        times[way][part].append(value)
                    tokens[way].append(int(rollouts.response_mask.sum()))
        engine.close()
    medians = {way: {part: statistics.median(values) for part, values in parts.items()} for way, parts in times.items()}
    rows = 2 * args.pairs * args.group_size
    print(
        f"CPU threads {torch.get_num_threads()}: {rows} rollouts per step ({args.pairs} pairs x 2 videos x group "
        f"{args.group_size}) of up to {args.cot_tokens} tokens; CoT tokens per step: HF {tokens['hf']}, "
        f"vLLM {tokens['vllm']}"
    )
    print(f"  {'part (median s)':<18}{'HF rollouts':>13}{'vLLM rollouts':>15}")
    for part in medians["hf"]:
        print(f"  {part:<18}{medians['hf'][part]:>13.2f}{medians['vllm'][part]:>15.2f}")
    steps = {way: sum(parts.values()) for way, parts in medians.items()}
    print(f"  {'step':<18}{steps['hf']:>13.2f}{steps['vllm']:>15.2f}")
    print(f"rollouts: HF / vLLM {medians['hf']['rollouts'] / medians['vllm']['rollouts']:.2f}x")
    print(f"whole step: HF / vLLM {steps['hf'] / steps['vllm']:.2f}x")


if __name__ == "__main__":
    main()
