"""Scoring speed, measured side by side in one run on a random Qwen3-VL big enough for compute to dominate.

(a) think-then-score / CoT generation alone (target <= 1.05), beside the naive path that generates and
    then re-runs the whole `[video ; prompt ; cot ; <reward>]` sequence;
(b) fast mode (no CoT) speed-up over think mode, at `--cot-tokens` and at a realistic `descore` CoT
    length (`--long-cot-tokens`, 512);
(c) throughput of one batch of 8 over 8 single calls (fast and think).

    python benchmarks/bench_scoring.py [--device cuda] [--dtype bfloat16] [--cot-tokens 128]
        [--long-cot-tokens 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import transformers

from descore_reward import DeScoreConfig, DeScoreModel, VideoSampling
from descore_reward.synthetic import Scene, render
from descore_reward.tiny import CPU_BENCHMARK_TEXT, QWEN3_VL_8B_TEXT, QWEN3_VL_8B_VISION, build_tiny_backbone

SIZES = {
    "cpu": (
        CPU_BENCHMARK_TEXT,
        dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, deepstack_visual_indexes=[1, 2, 3]),
    ),
    "8b": (QWEN3_VL_8B_TEXT, QWEN3_VL_8B_VISION),
}


def timed(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def full_forward_reward(model: DeScoreModel, inputs, generated: torch.Tensor) -> torch.Tensor:
    """The naive second pass: re-run `[prompt ; cot ; <reward>]` from scratch, video included."""
    length = torch.full((len(generated),), generated.shape[1], device=generated.device)
    return model.rewards_of(model.scored_sequences(inputs, generated, length))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu", help="'8b': Qwen3-VL-8B shapes (GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--cot-tokens", type=int, default=128)
    parser.add_argument("--long-cot-tokens", type=int, default=512, help="a realistic descore CoT length")
    parser.add_argument("--batch-cot-tokens", type=int, default=32, help="CoT length for the batching figure")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    text, vision = SIZES[args.size]
    sampling = VideoSampling(fps=2.0, max_pixels_per_frame=448 * 448)
    with tempfile.TemporaryDirectory() as scratch:
        build_tiny_backbone(f"{scratch}/backbone", text=text, vision=vision)
        model = DeScoreModel.from_backbone(
            f"{scratch}/backbone", DeScoreConfig(sampling=sampling), dtype=dtype, device=device, seed=0
        )
    # A 2-second, 448x448, 16 fps clip: 4 frames at 2 fps, 196 video tokens per temporal patch.
    videos = [
        torch.from_numpy(render(Scene(c, "circle", d), frames=32, height=448, width=448))
        for c, d in [("red", "right"), ("blue", "left"), ("green", "up"), ("yellow", "down")] * 2
    ]
    prompt = Scene().prompt()

    def generate_only(batch=videos[:1], tokens=args.cot_tokens):
        inputs = model.prepare_inputs(batch, [prompt] * len(batch))
        penalty = model.rubric.repetition_penalty  # as `score` decodes
        return inputs, model.generate_cots(
            inputs, max_new_tokens=tokens, min_new_tokens=tokens, repetition_penalty=penalty
        )

    def naive():
        inputs, (generated, _, _) = generate_only()
        full_forward_reward(model, inputs, generated)

    def think(batch=videos[:1], tokens=args.cot_tokens):
        model.score(
            batch,
            prompt,
            think=True,
            max_new_tokens=tokens,
            batch_size=len(batch),
            generation_kwargs=dict(min_new_tokens=tokens),
        )

    def fast(batch=videos[:1]):
        model.score(batch, prompt, think=False, batch_size=len(batch))

    inputs = model.prepare_inputs(videos[:1], [prompt])
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
        f"{args.dtype}, text hidden {text['hidden_size']} x {text['num_hidden_layers']} layers, "
        f"prompt {inputs['input_ids'].shape[1]} tokens of which {int((inputs['mm_token_type_ids'] == 2).sum())} "
        f"video, CoT {args.cot_tokens} tokens, threads {torch.get_num_threads()}"
    )
    with torch.no_grad():
        think(tokens=4), fast(), naive()  # warm-up
        cases = {
            "generate": lambda: generate_only(),
            "think": lambda: think(),
            "think_long": lambda: think(tokens=args.long_cot_tokens),
            "naive": naive,
            "fast": lambda: fast(),
            "fast_batch8": lambda: fast(videos),
            "fast_single8": lambda: [fast([v]) for v in videos],
            "think_batch8": lambda: think(videos, args.batch_cot_tokens),
            "think_single8": lambda: [think([v], args.batch_cot_tokens) for v in videos],
        }
        times = {name: [] for name in cases}
        for _ in range(args.repeats):  # interleaved, so that drift on a noisy machine hits all cases alike
            for name, case in cases.items():
                times[name].append(timed(case, device))
    t = {name: statistics.median(values) for name, values in times.items()}
    for name, value in t.items():
        print(f"  {name:14s} median {value:8.3f} s   ({', '.join(f'{v:.3f}' for v in times[name])})")
    print(f"(a) think-then-score / generation alone: {t['think'] / t['generate']:.3f}   (target <= 1.05)")
    print(f"    naive generate + re-forward / generation alone: {t['naive'] / t['generate']:.3f}")
    print(
        f"(b) fast mode speed-up over think mode: {t['think'] / t['fast']:.1f}x at {args.cot_tokens} CoT tokens, "
        f"{t['think_long'] / t['fast']:.1f}x at {args.long_cot_tokens}"
    )
    print(
        f"(c) batch of 8 vs 8 single calls, throughput: fast {t['fast_single8'] / t['fast_batch8']:.2f}x, "
        f"think ({args.batch_cot_tokens} CoT tokens) {t['think_single8'] / t['think_batch8']:.2f}x"
    )


if __name__ == "__main__":
    main()
