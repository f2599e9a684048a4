"""Think-mode scoring on the vLLM engine against the Hugging Face path, side by side in one run.

One set of videos with ragged CoTs (each batch of 8: seven CoTs of `--short` tokens and one of `--long`,
forced: the end-of-sequence token is held back until a row's length, then forced), scored both ways:

(a) videos per second, vLLM engine / HF `generate` in batches of 8 (the library's default), and the
    useful share of HF's decode steps;
(b) the reward request's cost beside the CoT's on the engine (`[prompt ; cot ; <reward>]`, prefix-cached);
(c) what JPEG transport (the lossy alternative to the client's raw frames) costs in reward, fast mode.

Run it in the vLLM environment (`.ci/vllm_env.sh DIR`), e.g.

    VLLM_CPU_KVCACHE_SPACE=4 python benchmarks/bench_vllm.py                   # CPU: a small random backbone
    python benchmarks/bench_vllm.py --size 8b --device cuda --dtype bfloat16   # GPU: the published sizes
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from descore_reward import DeScoreConfig, DeScoreModel, VideoSampling, load_video
from descore_reward.engines.client import decode_video, encode_video
from descore_reward.engines.export import export_for_vllm
from descore_reward.engines.vllm_engine import VLLMEngine
from descore_reward.tiny import CPU_BENCHMARK_TEXT, QWEN3_VL_8B_TEXT, QWEN3_VL_8B_VISION, build_tiny_backbone

SIZES = {
    "cpu": (
        CPU_BENCHMARK_TEXT,
        dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, deepstack_visual_indexes=[0, 1]),
    ),
    "8b": (QWEN3_VL_8B_TEXT, QWEN3_VL_8B_VISION),
}
REAL_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_videos" / "videos"


class ForcedLengths(LogitsProcessor):
    """Row i writes exactly `lengths[i]` tokens, then its end-of-sequence token (HF side)."""

    def __init__(self, lengths: list[int], prompt_length: int, eos: int):
        self.lengths, self.prompt_length, self.eos = torch.tensor(lengths), prompt_length, eos

    def __call__(self, input_ids, scores):
        written = input_ids.shape[1] - self.prompt_length
        ended = (self.lengths.to(scores.device) == written)[:, None]
        only_eos = torch.full_like(scores, -1e9)
        only_eos[:, self.eos] = 0.0
        scores[:, self.eos] = -1e9
        return torch.where(ended, only_eos, scores)


def hf_think(model: DeScoreModel, videos, prompts, lengths, batch_size: int) -> float:
    """Seconds for HF think mode in batches, each batch's rows forced to their lengths."""
    start = time.perf_counter()
    for first in range(0, len(videos), batch_size):
        batch = slice(first, first + batch_size)
        inputs = model.prepare_inputs(videos[batch], prompts[batch])
        forced = ForcedLengths(lengths[batch], inputs["input_ids"].shape[1], model.eos_token_ids()[0])
        generated, cot_length, cache = model.generate_cots(
            inputs,
            max_new_tokens=max(lengths[batch]) + 1,
            repetition_penalty=model.rubric.repetition_penalty,
            do_sample=False,
            logits_processor=LogitsProcessorList([forced]),
        )
        assert cot_length.tolist() == lengths[batch], (cot_length.tolist(), lengths[batch])
        model.reward_after_generation(inputs, generated, cot_length, cache)
    return time.perf_counter() - start


def vllm_think(engine: VLLMEngine, videos, prompts, lengths) -> tuple[float, float]:
    """Seconds for the engine's two phases (CoTs, then rewards), every row forced to its length: the flow
    of `VLLMEngine.score` with a per-request budget and the end-of-sequence token ignored."""
    from vllm import SamplingParams

    requests = [engine.requests.prompt(video, prompt) for video, prompt in zip(videos, prompts)]
    greedy = engine.requests.cot_parameters()
    parameters = [
        SamplingParams(
            max_tokens=length,
            min_tokens=length,  # the end-of-sequence token is held back until the row's length
            temperature=0.0,
            repetition_penalty=greedy.repetition_penalty,
            logit_bias=greedy.logit_bias,
        )
        for length in lengths
    ]
    start = time.perf_counter()
    generations = engine.llm.generate(requests, parameters, use_tqdm=False)
    cots = [list(generation.outputs[0].token_ids) for generation in generations]
    middle = time.perf_counter()
    assert [len(cot) for cot in cots] == lengths
    rewards = engine.llm.generate(
        [engine.requests.reward_prompt(r, c) for r, c in zip(requests, cots)],
        engine.requests.reward_parameters(),
        use_tqdm=False,
    )
    [engine.requests.reward(reward) for reward in rewards]
    return middle - start, time.perf_counter() - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--short", type=int, default=16)
    parser.add_argument("--long", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    dtype = getattr(torch, args.dtype)
    text, vision = SIZES[args.size]
    sampling = VideoSampling(fps=2.0, max_pixels_per_frame=224 * 224, max_total_pixels=224 * 224 * 8)
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        build_tiny_backbone(root / "backbone", text=text, vision=vision)
        model = DeScoreModel.from_backbone(root / "backbone", DeScoreConfig(sampling=sampling), seed=0)
        model.save_pretrained(root / "checkpoint")
        export_for_vllm(root / "checkpoint", root / "export", dtype=dtype)
        model = DeScoreModel.from_pretrained(root / "checkpoint", dtype=dtype, device=args.device)
        files = sorted(REAL_VIDEOS.glob("*.mp4"))
        videos = [load_video(files[i % len(files)], sampling) for i in range(args.videos)]
        prompts = [f"a generated video, take {i}" for i in range(args.videos)]
        lengths = [args.long if i % 8 == 7 else args.short for i in range(args.videos)]
        prompt_tokens = model.prepare_inputs(videos[:1], prompts[:1])["input_ids"].shape[1]
        cpu = args.device == "cpu"
        engine = VLLMEngine(
            root / "export",
            dtype=args.dtype,
            max_model_len=prompt_tokens + args.long + 64,
            **({"distributed_executor_backend": "uni", "enforce_eager": True} if cpu else {}),
        )
        vllm_think(engine, videos[:2], prompts[:2], lengths[:2])  # warm-up of both paths
        hf_think(model, videos[:2], prompts[:2], lengths[:2], 8)
        hf_times, cot_times, reward_times = [], [], []
        for _ in range(args.repeats):  # interleaved
            with torch.no_grad():
                hf_times.append(hf_think(model, videos, prompts, lengths, 8))
            cot, reward = vllm_think(engine, videos, prompts, lengths)
            cot_times.append(cot)
            reward_times.append(reward)
        hf, cot, reward = (statistics.median(t) for t in (hf_times, cot_times, reward_times))
        useful = sum(lengths) / sum(8 * max(lengths[i : i + 8]) for i in range(0, len(lengths), 8))
        raw = engine.score(videos, prompts, think=False)
        jpeg_videos = [decode_video(encode_video(video, "", transport="jpeg"), i)[0] for i, video in enumerate(videos)]
        jpeg = engine.score(jpeg_videos, prompts, think=False)
        differences = [abs(a.reward - b.reward) for a, b in zip(raw, jpeg)]
        spread = statistics.pstdev([r.reward for r in raw]) or float("nan")
        engine.close()
    print(f"size {args.size}, {args.dtype} on {args.device}; {args.videos} videos of {prompt_tokens} prompt tokens;")
    print(f"CoTs per batch of 8: seven of {args.short} tokens and one of {args.long}; medians of {args.repeats}")
    print(f"(a) videos/s think mode: HF batch 8 {args.videos / hf:.2f}, vLLM {args.videos / (cot + reward):.2f}")
    print(f"    vLLM / HF: {hf / (cot + reward):.2f}x   (HF decode steps that are useful: {useful:.0%})")
    print(f"(b) reward requests {reward:.3f} s beside CoTs {cot:.3f} s ({reward / args.videos * 1000:.1f} ms a video)")
    print(
        f"(c) JPEG transport: |reward change| mean {statistics.mean(differences):.2e}, max {max(differences):.2e} "
        f"(spread of the rewards over these videos {spread:.2e})"
    )


if __name__ == "__main__":
    main()
