"""Stage-1 training throughput (pairs/s) and peak memory, with and without gradient checkpointing.

The scoring benchmark's model (random Qwen3-VL, text hidden 512 x 8 layers), LoRA rank 64, pairs of
2-second 448x448 videos with 128-token CoTs. Each setting runs in its own child process, so peak
memory (CUDA: max allocated; CPU: the child's peak resident set) belongs to that setting alone.

    python benchmarks/bench_train.py [--device cuda] [--steps 4] [--micro-batch 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time


def run_setting(args: dict, checkpointing: bool, queue) -> None:
    import torch
    import transformers
    from bench_scoring import SIZES

    from descore_reward import DeScoreConfig, DeScoreModel, VideoSampling
    from descore_reward.data import PairBatch, PreferencePair
    from descore_reward.losses import bradley_terry_loss
    from descore_reward.synthetic import Scene, render
    from descore_reward.tiny import build_tiny_backbone
    from descore_reward.video import load_video

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device(args["device"])
    text, vision = SIZES["cpu"]
    with tempfile.TemporaryDirectory() as scratch:
        build_tiny_backbone(f"{scratch}/backbone", text=text, vision=vision)
        model = DeScoreModel.from_backbone(
            f"{scratch}/backbone", DeScoreConfig(sampling=VideoSampling(max_pixels_per_frame=448 * 448)), seed=0
        )
    model.add_lora(rank=64)
    if checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.backbone.enable_input_require_grads()
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
    frames = [torch.from_numpy(render(Scene(c, "square", "right"), 32, 448, 448)) for c in ("red", "blue")]
    winner, loser = (load_video(f, model.config.sampling) for f in frames)
    cot = " ".join(["the square moves right and its colour matches the prompt"] * 12)  # about 128 tokens
    pairs = [PreferencePair(str(i), Scene().prompt(), "a.mp4", "b.mp4", "A") for i in range(args["micro_batch"])]
    batch = PairBatch(pairs, [winner] * len(pairs), [loser] * len(pairs))
    prompts = [p.prompt for p in pairs]

    def step() -> None:
        rewards = model(batch.videos_a + batch.videos_b, prompts * 2, [cot] * (2 * len(pairs)))
        loss = bradley_terry_loss(rewards[: len(pairs)], rewards[len(pairs) :])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args["steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux
    queue.put({"pairs_per_second": args["steps"] * len(pairs) / seconds, "peak_gib": peak})


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--micro-batch", type=int, default=2, help="pairs per step (2 sequences each)")
    args = vars(parser.parse_args())
    context = multiprocessing.get_context("spawn")
    results = {}
    for checkpointing in (False, True):
        queue = context.Queue()
        child = context.Process(target=run_setting, args=(args, checkpointing, queue))
        child.start()
        results[checkpointing] = queue.get()
        child.join()
    memory = "CUDA max allocated" if args["device"].startswith("cuda") else "peak RSS of the process"
    print(f"device {args['device']}, micro-batch {args['micro_batch']} pairs, {args['steps']} steps, LoRA r64")
    for checkpointing, result in results.items():
        print(
            f"  gradient checkpointing {'on ' if checkpointing else 'off'}: "
            f"{result['pairs_per_second']:.3f} pairs/s, {memory} {result['peak_gib']:.2f} GiB"
        )
    off, on = results[False], results[True]
    print(
        f"checkpointing: throughput x{on['pairs_per_second'] / off['pairs_per_second']:.2f}, "
        f"memory x{on['peak_gib'] / off['peak_gib']:.2f}"
    )


if __name__ == "__main__":
    main()
