"""Label Flow-DPO pairs with DeScore: N Wan-2.1 videos per prompt, best against worst.

    python examples/rank_dpo_pairs.py --descore path/to/descore --pipeline Wan-AI/Wan2.1-T2V-1.3B-Diffusers \
        --prompts prompts.txt --out dpo_pairs --samples 4 --min-gap 0.1

Then train:  accelerate launch -m descore_reward.cli train flow-dpo --config examples/configs/flow_dpo_wan_1_3b.yaml
Rerunning the same command continues where it stopped.
"""

import argparse
from pathlib import Path

import torch
from diffusers import WanPipeline

from descore_reward import DeScoreReward
from descore_reward.wan.flow_dpo import rank_dpo_pairs
from descore_reward.wan.generation import WanSampling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--descore", required=True, help="DeScore checkpoint directory")
    parser.add_argument("--pipeline", required=True, help="WanPipeline id or path")
    parser.add_argument("--prompts", required=True, help="text file, one prompt per line")
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--min-gap", type=float, default=0.0)
    parser.add_argument("--think", action="store_true", help="score think-then-score (slower)")
    parser.add_argument(
        "--engine", choices=("hf", "vllm"), default="hf", help="vllm: think mode at scale (docs/serving.md)"
    )
    # Flow-GRPO's Wan-2.1-1.3B recipe: 240x416, 33 frames, 20 steps, guidance 4.5.
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--num-inference-steps", "--steps", dest="num_inference_steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.5)
    args = parser.parse_args()
    prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipeline = WanPipeline.from_pretrained(args.pipeline, torch_dtype=dtype).to(device)
    reward_fn = DeScoreReward(args.descore, think=args.think, device=device, dtype=dtype, engine=args.engine)
    pairs = rank_dpo_pairs(
        reward_fn,
        prompts,
        args.out,
        pipeline=pipeline,
        samples_per_prompt=args.samples,
        min_gap=args.min_gap,
        sampling=WanSampling(args.height, args.width, args.frames, args.num_inference_steps, args.guidance),
    )
    print(f"pairs written to {pairs}")


if __name__ == "__main__":
    main()
