"""Flow-DPO on Wan-2.1 with DeScore-labelled pairs.

Pair labelling (`rank_dpo_pairs`): for each prompt, N videos (generated with a `WanPipeline`, or read
from a folder), scored by a reward function; the best against the worst becomes one preference pair in
this library's schema (`data.py`: `video_a` the best, label "A", `reward_a` / `reward_b`), optionally
only when the score gap is at least `min_gap`. Resumable: finished prompts and written videos are kept.
Training reads any pair file `data.read_pairs` reads (human-labelled pairs too), ties left out.

Training (`train`): LoRA on the `WanTransformer3DModel`; the reference is the same
transformer with the adapter disabled. Winner and loser share the noise `e` and the logit-normal
time `s`; `x_s = (1 - s) x0 + s e`, the velocity target is `e - x0`, `err` the per-sample MSE, and
`loss = -log sigmoid(-beta / 2 * ((err_w - err_ref_w) - (err_l - err_ref_l)))`. The LoRA is saved
with `WanPipeline.save_lora_weights`, so `WanPipeline.load_lora_weights` loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..atomic import append_jsonl, read_jsonl_log
from ..data import DataError, PreferencePair, pair_record, read_pairs
from ..training.config import TrainerConfig
from ..training.distributed import epoch_batch
from .generation import WanSampling, write_mp4_atomically
from .lora import reference_transformer, save_lora, start_lora_training
from .vae import cached_latents


def rank_dpo_pairs(
    reward_fn,
    prompts: list[str],
    out_dir: str | Path,
    pipeline=None,
    samples_per_prompt: int = 4,
    min_gap: float = 0.0,
    seed: int = 0,
    fps: int = 16,
    sampling: WanSampling | None = None,
) -> Path:
    """Write `out_dir/pairs.jsonl` (one best-vs-worst pair per prompt, in this library's pair schema:
    `video_a` the best, label "A", `reward_a` / `reward_b` the two scores) and return its path. A
    prompt whose gap is below `min_gap` goes to `skipped.jsonl` instead, labelled "tie".

    With `pipeline`, videos are generated as `sampling` says (default: `WanSampling()`) and saved as
    `out_dir/videos/{prompt index}_{k}.mp4`; without, those files must already exist.
    """
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    pairs_path, skipped_path = out_dir / "pairs.jsonl", out_dir / "skipped.jsonl"
    done = {row.get("id") for path in (pairs_path, skipped_path) for row in read_jsonl_log(path)}
    for index, prompt in enumerate(tqdm(prompts, desc="labelling pairs")):
        if f"prompt-{index}" in done:
            continue
        paths = [out_dir / "videos" / f"{index}_{k}.mp4" for k in range(samples_per_prompt)]
        missing = [p for p in paths if not p.exists()]
        if missing and pipeline is None:
            raise FileNotFoundError(f"{missing[0]}: no such sample and no pipeline to generate it")
        if missing:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
            frames = pipeline(
                prompt,
                num_videos_per_prompt=samples_per_prompt,
                generator=generator,
                output_type="pt",
                **(sampling or WanSampling()).pipeline_kwargs(),
            ).frames
            for video, path in zip(frames, paths, strict=True):
                write_mp4_atomically(video, path, fps)
        scores, _ = reward_fn([str(p) for p in paths], [prompt] * len(paths))
        best, worst = int(np.nanargmax(scores)), int(np.nanargmin(scores))
        decided = scores[best] - scores[worst] >= max(min_gap, 1e-12)
        pair = PreferencePair(
            id=f"prompt-{index}",
            prompt=prompt,
            video_a=paths[best],
            video_b=paths[worst],
            label="A" if decided else "tie",
            reward_a=float(scores[best]),
            reward_b=float(scores[worst]),
        )
        append_jsonl(pairs_path if decided else skipped_path, [pair_record(pair, out_dir)])
    return pairs_path


def read_dpo_pairs(path: str | Path) -> list[PreferencePair]:
    """The decided pairs (ties left out) of a pairs file in any format `data.read_pairs` reads: the one
    `rank_dpo_pairs` writes, human-labelled JSONL, VideoAlign CSV, ...; checked up front."""
    pairs = [pair for pair in read_pairs(path) if pair.label != "tie"]
    if not pairs:
        raise DataError([f"{path}: holds no decided pair (every pair is a tie); Flow-DPO needs a winner"])
    return pairs


def flow_dpo_loss(err_w, err_l, ref_err_w, ref_err_l, beta: float) -> torch.Tensor:
    """`-log sigmoid(-beta / 2 * ((err_w - ref_err_w) - (err_l - ref_err_l)))`, averaged over pairs."""
    return -F.logsigmoid(-0.5 * beta * ((err_w - ref_err_w) - (err_l - ref_err_l))).mean()


def velocity_error(transformer, x0, noise, sigma, text) -> torch.Tensor:
    """Per-sample MSE of the predicted velocity against `noise - x0` at noise level `sigma` `(B,)`."""
    s = sigma.view(-1, 1, 1, 1, 1)
    noisy = (1.0 - s) * x0 + s * noise
    prediction = transformer(
        hidden_states=noisy, timestep=sigma * 1000.0, encoder_hidden_states=text, return_dict=False
    )[0]
    return ((prediction.float() - (noise - x0).float()) ** 2).mean(dim=(1, 2, 3, 4))


@dataclass(kw_only=True)
class FlowDPOConfig(TrainerConfig):
    """Flow-DPO settings, beside `TrainerConfig`'s (beta 100 as Flow-GRPO's image recipe; LoRA r32 /
    alpha 64 as its Wan recipe).

    pipeline: a `WanPipeline` id or path. pairs: the JSONL `rank_dpo_pairs` writes, or any pair file.
    `batch_size` pairs per process per step, from shuffled epochs of the pairs. `latent_cache`: a folder
    where the VAE latents of the pair videos are kept across steps, resumes and runs (recommended for more
    than one pass over the pairs); None encodes each video when it is drawn.
    """

    pipeline: str
    pairs: str
    beta: float = 100.0
    lora_rank: int = 32
    lora_alpha: int = 64
    steps: int = 1000
    batch_size: int = 1
    latent_cache: str | None = None


def train(config: FlowDPOConfig, model=None, stop_after: int | None = None) -> dict:
    """Train a LoRA with Flow-DPO on `config.pairs`, resuming from the newest checkpoint in `output_dir`;
    the trained LoRA goes to `output_dir/final`. `model`: a `WanPipeline` (trained in place); None loads
    `config.pipeline`. `stop_after` ends the run after that many steps, as an interruption would. Under
    `accelerate launch` each process draws its own share of each epoch of pairs and the gradients are
    averaged. Returns the trainer state (`training/run.py`): each step's loss."""
    pairs = read_dpo_pairs(config.pairs)  # checked before any model loads
    run, pipeline, optimizer = start_lora_training(config, model, "flow-dpo")
    accelerator, transformer = run.accelerator, pipeline.transformer
    transformer.train()
    stop = run.finished
    while not stop:
        rank, processes = accelerator.process_index, accelerator.num_processes
        picks = [pairs[i] for i in epoch_batch(len(pairs), run.step, config.batch_size, config.seed, rank, processes)]
        generator = run.seed_step()
        # Winner and loser in one batch: (2B, C, T', H', W'), sharing noise and time.
        x0 = torch.stack(
            [cached_latents(pipeline, p.winner_and_loser[side], config.latent_cache) for side in (0, 1) for p in picks]
        ).float()
        with torch.no_grad():
            text = pipeline.encode_prompt([p.prompt for p in picks], do_classifier_free_guidance=False)[0]
        text = text.repeat(2, 1, 1)
        noise = torch.randn(x0[: len(picks)].shape, generator=generator).to(x0).repeat(2, 1, 1, 1, 1)
        sigma = torch.sigmoid(torch.randn(len(picks), generator=generator)).to(x0).repeat(2)  # logit-normal time
        with run.autocast():
            with reference_transformer(transformer):
                reference = velocity_error(transformer, x0, noise, sigma, text)
            error = velocity_error(transformer, x0, noise, sigma, text)
        loss = flow_dpo_loss(*error.chunk(2), *reference.chunk(2), config.beta)
        run.backward(loss)
        run.optimizer_step(optimizer)
        stop = run.end_step({"loss": loss.item()}, stop_after=stop_after)
    return run.finish(lambda path, state: save_lora(pipeline, path, state))
