"""Generate the VBench videos of the paper's five dimensions with Wan-2.1-1.3B, optionally with a LoRA
from `descore train flow-dpo` or `wan-grpo`; with `--best-of N --descore DIR`, each kept video is the best of N
candidates by DeScore (test-time scaling). Same layout either way: `{out}/{prompt}-{i}.mp4`, five per
prompt, 16 fps, and `{out}/manifest.json` (settings and every seed). Rerun to resume; share out
over GPUs with `accelerate launch`.

    accelerate launch examples/vbench/generate.py --out runs/vbench/baseline
    accelerate launch examples/vbench/generate.py --lora runs/grpo_wan_1_3b/final --out runs/vbench/grpo
    accelerate launch examples/vbench/generate.py --best-of 4 --descore DIR --out runs/vbench/best_of_4

Defaults are the VBench team's Wan-2.1 settings (832x480, 81 frames, 50 steps, guidance 6.0, shift
3.0, Wan's negative prompt). Prompts come from the installed `vbench` package's
`VBench_full_info.json`, or `--full-info PATH`. Then: `examples/vbench/evaluate.py` in VBench's own
environment.
"""

import argparse
import dataclasses

import torch

from descore_reward.vbench.results import VBENCH_DIMENSIONS
from descore_reward.wan.generation import GenerationSettings, generate_videos, read_vbench_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the videos (a rerun resumes)")
    parser.add_argument("--pipeline", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", help="WanPipeline id or path")
    parser.add_argument("--lora", help="a LoRA folder written by `descore train flow-dpo` or `wan-grpo` (OUTPUT/final)")
    parser.add_argument("--full-info", help="VBench_full_info.json (default: the installed vbench package's)")
    parser.add_argument("--dimensions", nargs="+", default=list(VBENCH_DIMENSIONS))
    parser.add_argument("--best-of", type=int, default=1, help="candidates per video, ranked by --descore")
    parser.add_argument("--descore", help="DeScore checkpoint that ranks the candidates (with --best-of > 1)")
    parser.add_argument("--think", action="store_true", help="rank think-then-score (slower) instead of fast")
    parser.add_argument(
        "--engine", choices=("hf", "vllm"), default="hf", help="vllm: think mode at scale (docs/serving.md)"
    )
    defaults = GenerationSettings()
    for field in dataclasses.fields(GenerationSettings):
        if field.name not in ("best_of",):
            flags = ["--" + field.name.replace("_", "-")] + (["--steps"] if field.name == "num_inference_steps" else [])
            kind, default = type(getattr(defaults, field.name)), getattr(defaults, field.name)
            parser.add_argument(*flags, dest=field.name, type=kind, default=default)
    args = parser.parse_args()
    if args.best_of > 1 and not args.descore:
        parser.error("--best-of above 1 needs --descore to rank the candidates")
    settings = GenerationSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(GenerationSettings)})
    prompts = read_vbench_prompts(args.full_info, args.dimensions)

    from accelerate import PartialState
    from diffusers import WanPipeline

    device = PartialState().device
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipeline = WanPipeline.from_pretrained(args.pipeline, torch_dtype=dtype).to(device)
    pipeline.set_progress_bar_config(disable=True)
    if args.lora:
        pipeline.load_lora_weights(args.lora)
    reward_fn = None
    if args.best_of > 1:
        from descore_reward import DeScoreReward

        reward_fn = DeScoreReward(args.descore, think=args.think, device=device, dtype=dtype, engine=args.engine)
    paths = generate_videos(pipeline, prompts, args.out, settings, reward_fn)
    print(f"{len(prompts)} prompts x {settings.samples} samples; this process: {len(paths)} videos in {args.out}")


if __name__ == "__main__":
    main()
