"""Wan-2.1 videos for benchmarks: the VBench prompt suite, one MP4 per (prompt, sample) in VBench's
standard-mode layout `{prompt}-{i}.mp4`, resumable, shared out over processes, with a manifest of
every setting and seed; optionally best-of-N, the candidate a reward ranks highest kept (test-time
scaling: the same layout, so it is one more row of a comparison).

Defaults are the VBench team's Wan2.1-T2V-1.3B evaluation (REFERENCE.md section 10): 832 x 480,
81 frames, 16 fps, 50 steps, guidance 6.0, flow shift 3.0, Wan's negative prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_file, atomic_write_text
from ..vbench.results import VBENCH_DIMENSIONS

# Wan-2.1's default negative prompt (its sampling config), as the VBench team used it.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
MANIFEST = "manifest.json"


@dataclass
class WanSampling:
    """How one Wan-2.1 video is sampled, everywhere in this library (VBench videos, Flow-DPO pairs, GRPO
    rollouts): size in pixels, frames (4k + 1), denoising steps, classifier-free guidance against a
    negative prompt (none at `guidance_scale` 1). The defaults are the VBench team's Wan2.1-T2V-1.3B
    evaluation; the GRPO trainer sets Flow-GRPO's."""

    height: int = 480
    width: int = 832
    num_frames: int = 81
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
    negative_prompt: str = WAN_NEGATIVE_PROMPT

    def __post_init__(self):
        if (self.num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 4k + 1 (Wan's VAE), got {self.num_frames}")

    def pipeline_kwargs(self) -> dict:
        """These settings as `WanPipeline.__call__` keywords."""
        names = ("height", "width", "num_frames", "num_inference_steps", "guidance_scale", "negative_prompt")
        return {name: getattr(self, name) for name in names}


@dataclass
class GenerationSettings(WanSampling):
    """How every benchmark video is made: `WanSampling`, the scheduler's `flow_shift`, the files' `fps`,
    `samples` videos per prompt (VBench: 5) and `best_of` candidates per video, the one the reward ranks
    highest kept (1: plain sampling)."""

    flow_shift: float = 3.0
    fps: int = 16
    samples: int = 5
    best_of: int = 1
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.samples < 1 or self.best_of < 1:
            raise ValueError(f"samples and best_of must be at least 1, got {self.samples} and {self.best_of}")


def read_vbench_prompts(full_info: str | Path | None = None, dimensions=VBENCH_DIMENSIONS) -> list[str]:
    """The prompts of `dimensions` in VBench's `VBench_full_info.json` (a list of `{"prompt_en",
    "dimension": [...]}`), each once, in file order; None reads the installed `vbench` package's file."""
    if full_info is None:
        spec = importlib.util.find_spec("vbench")
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                "VBench_full_info.json: the vbench package is not installed here; pass the file's path "
                "(it ships inside the vbench package: <site-packages>/vbench/VBench_full_info.json)"
            )
        full_info = Path(spec.origin).parent / "VBench_full_info.json"
    full_info = Path(full_info)
    entries = json.loads(full_info.read_text(encoding="utf-8"))
    known = {d for entry in entries for d in entry.get("dimension", [])}
    unknown = sorted(set(dimensions) - known)
    if unknown:
        raise ValueError(f"{full_info}: no prompts for dimensions {unknown}; it has {sorted(known)}")
    prompts = []
    for number, entry in enumerate(entries):
        if not isinstance(entry.get("prompt_en"), str) or not isinstance(entry.get("dimension"), list):
            raise ValueError(f"{full_info}: entry {number} lacks a 'prompt_en' string or a 'dimension' list")
        if set(entry["dimension"]) & set(dimensions) and entry["prompt_en"] not in prompts:
            prompts.append(entry["prompt_en"])
    return prompts


def video_path(folder: str | Path, prompt: str, index: int) -> Path:
    """`folder/{prompt}-{index}.mp4`, the name VBench's standard mode reads the prompt from."""
    if "/" in prompt or "\0" in prompt:
        raise ValueError(f"prompt {prompt!r}: a file name cannot hold '/' (VBench names videos after prompts)")
    return Path(folder) / f"{prompt}-{index}.mp4"


def candidate_seed(seed: int, prompt: str, index: int, candidate: int) -> int:
    """The seed of one candidate of one video: depends on the prompt's text, not its position in a list."""
    digest = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "little")
    return int(np.random.SeedSequence([seed, digest, index, candidate]).generate_state(1)[0])


def write_mp4_atomically(frames: torch.Tensor, path: str | Path, fps: int) -> Path:
    """Encode `(T, C, H, W)` frames in [0, 1] as an H.264 MP4 under a staging name, then rename it, so
    an interrupted write never leaves a file a resumed run would take as finished."""
    from diffusers.utils import export_to_video

    with atomic_file(path) as staging:
        export_to_video(list(frames.permute(0, 2, 3, 1).float().cpu().numpy()), str(staging), fps=fps)
    return Path(path)


def configure_pipeline(pipeline, settings: GenerationSettings):
    """Set the scheduler's flow shift when it has one (UniPC in the Wan-2.1 release)."""
    scheduler = pipeline.scheduler
    if "flow_shift" in scheduler.config:
        pipeline.scheduler = type(scheduler).from_config(scheduler.config, flow_shift=settings.flow_shift)
    return pipeline


def generate_videos(
    pipeline,
    prompts: list[str],
    out: str | Path,
    settings: GenerationSettings,
    reward_fn=None,
    stop_after: int | None = None,
) -> list[Path]:
    """Write `settings.samples` videos per prompt to `out` (existing files are kept: a rerun resumes),
    and `out/manifest.json`. Under `accelerate launch` each process takes every n-th video. With
    `best_of > 1`, `reward_fn(videos (N, T, C, H, W), prompts) -> (scores, info)` ranks each video's
    candidates and `out/scores/{prompt}-{i}.json` records them. `stop_after`: stop after writing this
    many videos (tests interrupt with it). Returns the paths of this process's videos."""
    from accelerate import PartialState

    if settings.best_of > 1 and reward_fn is None:
        raise ValueError(f"best_of {settings.best_of} needs a reward_fn to rank the candidates")
    out = Path(out)
    jobs = [(prompt, index) for prompt in prompts for index in range(settings.samples)]
    paths = {job: video_path(out, *job) for job in jobs}  # every name checked before any work
    state = PartialState()
    configure_pipeline(pipeline, settings)
    if state.is_main_process:
        manifest = {
            "settings": dataclasses.asdict(settings),
            "pipeline": str(pipeline.config.get("_name_or_path")),
            "scheduler": type(pipeline.scheduler).__name__,
            "videos": [
                {
                    "file": paths[job].name,
                    "prompt": job[0],
                    "index": job[1],
                    "seeds": [candidate_seed(settings.seed, *job, c) for c in range(settings.best_of)],
                }
                for job in jobs
            ],
        }
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    mine = jobs[state.process_index :: state.num_processes]
    written = 0
    for job in tqdm(mine, desc="generating videos", disable=not state.is_local_main_process):
        if paths[job].exists():
            continue
        prompt, index = job
        candidates = []
        for candidate in range(settings.best_of):
            generator = torch.Generator().manual_seed(candidate_seed(settings.seed, prompt, index, candidate))
            candidates.append(
                pipeline(
                    prompt,
                    **settings.pipeline_kwargs(),
                    generator=generator,
                    output_type="pt",
                ).frames[0]
            )
        best = 0
        if settings.best_of > 1:
            scores, _ = reward_fn(torch.stack(candidates), [prompt] * len(candidates))
            best = int(np.nanargmax(scores))
            record = {"prompt": prompt, "index": index, "scores": [float(s) for s in scores], "kept": best}
            atomic_write_text(out / "scores" / f"{paths[job].stem}.json", json.dumps(record, ensure_ascii=False))
        write_mp4_atomically(candidates[best], paths[job], settings.fps)
        written += 1
        if written == stop_after:
            break
    return [paths[job] for job in mine]
