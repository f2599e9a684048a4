"""Longcat-style GRPO on Wan-2.1: multi-reward GRPO on a flow-matching video model (as Flow-GRPO and
DanceGRPO do for Wan, and as the LongCat-Video report describes).

Sampling replaces the Euler ODE step with its SDE counterpart so that every denoising step is a
Gaussian with a log-probability. With `x_s = (1 - s) x0 + s e`, velocity `v = e - x0` and a step from
`s` to `s' < s` (`ds = s' - s`), the reverse SDE step is::

    std  = noise_level * sqrt(s / (1 - s))          (s' in the denominator when s = 1)
    mean = x + ds * (v + std^2 / (2 s) * (x + (1 - s) v))
    x'   = mean + std * sqrt(-ds) * z,   z ~ N(0, I)

`G` videos per prompt are sampled with classifier-free guidance, scored (`DeScoreReward`, optionally
in a `WeightedRewards` mix), turned into advantages normalised within each prompt's group and clipped,
and a configurable subset of the denoising steps is trained with the clipped policy loss plus a KL
term to the reference (the transformer with its LoRA disabled), in `updates_per_batch` optimizer
steps per sampled batch, so the ratio leaves 1 and the clip acts. LoRA on the transformer;
checkpoints, state and artefacts every trainer's (`descore_reward.training.run`).

The KL term, per denoising step, between the policy's and the reference's Gaussian steps (means
`m`, `m_ref`; `std_t = noise_level * sqrt(s / (1 - s))`; the step's own std is `std_t * sqrt(|ds|)`):

    kl_form "flow_grpo":  |m - m_ref|^2 / (2 std_t^2)            Flow-GRPO's term; its beta 0.004 is for this
    kl_form "gaussian":   |m - m_ref|^2 / (2 std_t^2 |ds|)       the exact KL, 1/|ds| times larger

(`|.|^2` averaged over elements). Over a 20-step schedule with shift 3, `1/|ds|` is 7 to 55, so a beta
tuned for one form does not transfer to the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..engines import ENGINES
from ..errors import DeScoreInputError
from ..losses import group_advantages
from ..training.config import TrainerConfig
from ..training.distributed import epoch_batch
from .generation import WanSampling
from .lora import reference_transformer, save_lora, start_lora_training
from .vae import decode_latents


def sde_step(
    velocity: torch.Tensor,
    sample: torch.Tensor,
    sigma: float,
    sigma_next: float,
    noise_level: float,
    generator: torch.Generator | None = None,
    next_sample: torch.Tensor | None = None,
):
    """One SDE step from noise level `sigma` to `sigma_next`: `(next_sample, log_prob (B,), mean, std)`.

    The log-probability of `next_sample` (sampled here when not given) is averaged over its elements.
    """
    ds = sigma_next - sigma
    std = noise_level * math.sqrt(sigma / (1.0 - (sigma if sigma < 1.0 else sigma_next)))  # finite at sigma = 1
    mean = sample + ds * (velocity + std**2 / (2.0 * sigma) * (sample + (1.0 - sigma) * velocity))
    scale = std * math.sqrt(-ds)
    if next_sample is None:
        noise = torch.randn(sample.shape, generator=generator, dtype=torch.float32).to(sample)
        next_sample = mean + scale * noise
    log_prob = -((next_sample.detach() - mean) ** 2) / (2 * scale**2) - math.log(scale) - 0.5 * math.log(2 * math.pi)
    return next_sample, log_prob.mean(dim=tuple(range(1, log_prob.ndim))), mean, scale


@dataclass
class Trajectory:
    """Sampled videos with what training needs: per-step latents `(B, S+1, ...)` and log-probs `(B, S)`."""

    videos: torch.Tensor  # (B, T, C, H, W) in [0, 1]
    latents: torch.Tensor
    log_probs: torch.Tensor
    sigmas: list[float]
    text: torch.Tensor  # (B, tokens, dim) prompt embeddings
    negative_text: torch.Tensor | None = None  # the negative prompt's, when sampled with guidance
    guidance_scale: float = 1.0

    def select(self, rows: torch.Tensor) -> Trajectory:
        """The videos at `rows` (a mini-batch of an update)."""
        negative = None if self.negative_text is None else self.negative_text[rows]
        return Trajectory(
            self.videos[rows],
            self.latents[rows],
            self.log_probs[rows],
            self.sigmas,
            self.text[rows],
            negative,
            self.guidance_scale,
        )


def guided_velocity(
    transformer,
    latents: torch.Tensor,
    sigma: float,
    text: torch.Tensor,
    negative_text: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """The velocity `(B, ...)` at noise level `sigma`; with `negative_text`, classifier-free guidance
    `v_neg + guidance_scale * (v - v_neg)` from one pass over the doubled batch."""
    timestep = torch.full((len(latents),), sigma * 1000.0, device=latents.device)
    if negative_text is None:
        return transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]
    both = transformer(
        hidden_states=torch.cat([latents, latents]),
        timestep=torch.cat([timestep, timestep]),
        encoder_hidden_states=torch.cat([negative_text, text]),
        return_dict=False,
    )[0]
    unguided, conditioned = both.chunk(2)
    return unguided + guidance_scale * (conditioned - unguided)


@torch.no_grad()
def sample_with_log_probs(
    pipeline, prompts: list[str], sampling: WanSampling, noise_level: float, generator: torch.Generator
) -> Trajectory:
    """Generate videos as `sampling` says with SDE steps (classifier-free guidance against its negative
    prompt when `guidance_scale > 1`), recording latents and log-probs."""
    transformer = pipeline.transformer
    guidance_scale, steps = sampling.guidance_scale, sampling.num_inference_steps
    guided = guidance_scale > 1.0
    text, negative_text = pipeline.encode_prompt(
        prompts, negative_prompt=[sampling.negative_prompt] * len(prompts), do_classifier_free_guidance=guided
    )
    channels = transformer.config.in_channels
    frames = (sampling.num_frames - 1) // pipeline.vae_scale_factor_temporal + 1
    shape = (
        len(prompts),
        channels,
        frames,
        sampling.height // pipeline.vae_scale_factor_spatial,
        sampling.width // pipeline.vae_scale_factor_spatial,
    )
    latents = torch.randn(shape, generator=generator).to(transformer.device, transformer.dtype)
    pipeline.scheduler.set_timesteps(steps)
    sigmas = pipeline.scheduler.sigmas.tolist()  # steps + 1 values, the last 0
    trajectory, log_probs = [latents], []
    for i in range(steps):
        velocity = guided_velocity(transformer, latents, sigmas[i], text, negative_text, guidance_scale)
        if sigmas[i + 1] > 0:
            latents, log_prob, _, _ = sde_step(velocity, latents, sigmas[i], sigmas[i + 1], noise_level, generator)
        else:  # the last step to sigma 0 stays deterministic (Euler)
            latents, log_prob = latents + (sigmas[i + 1] - sigmas[i]) * velocity, torch.zeros(len(prompts))
        trajectory.append(latents)
        log_probs.append(log_prob.float().cpu())
    videos = decode_latents(pipeline, latents)
    latents, log_probs = torch.stack(trajectory, 1), torch.stack(log_probs, 1)
    return Trajectory(videos, latents, log_probs, sigmas, text, negative_text if guided else None, guidance_scale)


@dataclass(kw_only=True)
class WanGRPOConfig(TrainerConfig, WanSampling):
    """GRPO settings, beside `TrainerConfig`'s; the rollouts are sampled as its `WanSampling` fields say.
    Defaults are Flow-GRPO's Wan-2.1-1.3B recipe: 240x416, 33 frames, 20 denoising steps, guidance 4.5
    against an empty negative prompt, 4 videos per prompt, 16 videos per
    process per sampled batch in 2 updates, KL beta 0.004 in Flow-GRPO's form, clip range 1e-3, LoRA
    r32 / alpha 64, learning rate 1e-4. Choices of this library: `noise_level` 0.7 (Flow-GRPO's
    default), `advantage_clip` 5.

    pipeline: a `WanPipeline` id or path. prompts: the training prompts.
    reward_model / reward_think: the DeScore checkpoint (directory or id) that scores the videos when
        `train` is given no `reward_fn`, in fast mode or think-then-score; `reward_engine` "vllm" scores
        on a vLLM engine, `reward_server` on a DeScore server (a URL, instead of `reward_model`).
    prompts_per_step: prompts per process per step, each sampled `group_size` times, from shuffled epochs
        of the prompts (a process with fewer prompts takes all it has).
    updates_per_batch: optimizer steps per sampled batch, each on a shuffled share of its videos; after
        the first the policy has moved, so the ratio leaves 1 and the clip range acts.
    guidance_scale / negative_prompt: classifier-free guidance in sampling and in the log-prob replay
        (1.0: none, one transformer pass per step instead of two).
    kl_form: "flow_grpo" or "gaussian" (the module docstring gives both).
    train_steps: which denoising steps are trained (None: all but the last, deterministic one).
    """

    pipeline: str
    prompts: list
    reward_model: str | None = None
    reward_think: bool = False
    reward_engine: str = "hf"
    reward_server: str | None = None
    steps: int = 100
    prompts_per_step: int = 4
    group_size: int = 4
    updates_per_batch: int = 2
    height: int = 240
    width: int = 416
    num_frames: int = 33
    num_inference_steps: int = 20
    guidance_scale: float = 4.5
    negative_prompt: str = ""
    noise_level: float = 0.7
    train_steps: list | None = None
    clip_range: float = 1e-3
    advantage_clip: float = 5.0
    kl_beta: float = 0.004
    kl_form: str = "flow_grpo"
    lora_rank: int = 32
    lora_alpha: int = 64
    save_every: int = 10

    def __post_init__(self):
        super().__post_init__()
        WanSampling.__post_init__(self)
        if self.group_size < 2:
            raise DeScoreInputError(
                f"group_size must be at least 2 (advantages are normalised in a group), got {self.group_size}"
            )
        if self.kl_form not in ("flow_grpo", "gaussian"):
            raise DeScoreInputError(f"kl_form must be 'flow_grpo' or 'gaussian', got {self.kl_form!r}")
        if self.reward_engine not in ENGINES:
            raise DeScoreInputError(f"reward_engine must be one of {ENGINES}, got {self.reward_engine!r}")
        videos = self.prompts_per_step * self.group_size
        if not 1 <= self.updates_per_batch <= videos:
            raise DeScoreInputError(
                f"updates_per_batch must lie in [1, prompts_per_step * group_size = {videos}], "
                f"got {self.updates_per_batch}"
            )


def policy_step_loss(
    transformer, trajectory: Trajectory, advantages: torch.Tensor, step: int, config: WanGRPOConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy loss plus `kl_beta` times the KL to the adapter-free reference (in `kl_form`) for
    one denoising step of every video of `trajectory`, velocities guided as they were when sampled."""
    sigmas = trajectory.sigmas
    sample, next_sample = trajectory.latents[:, step], trajectory.latents[:, step + 1]

    def step_distribution():
        velocity = guided_velocity(
            transformer, sample, sigmas[step], trajectory.text, trajectory.negative_text, trajectory.guidance_scale
        )
        return sde_step(velocity, sample, sigmas[step], sigmas[step + 1], config.noise_level, next_sample=next_sample)

    with reference_transformer(transformer):
        _, _, reference_mean, _ = step_distribution()
    _, log_prob, mean, scale = step_distribution()
    ratio = torch.exp(log_prob - trajectory.log_probs[:, step].to(log_prob))
    clipped = torch.clamp(ratio, 1.0 - config.clip_range, 1.0 + config.clip_range)
    policy_loss = torch.maximum(-advantages * ratio, -advantages * clipped).mean()
    kl = ((mean - reference_mean) ** 2).mean(dim=tuple(range(1, mean.ndim))) / (2 * scale**2)
    if config.kl_form == "flow_grpo":
        kl = kl * (sigmas[step] - sigmas[step + 1])
    loss = policy_loss + config.kl_beta * kl.mean()
    return loss, {
        "kl": kl.mean().item(),
        "clip_fraction": float(((ratio - 1).abs() > config.clip_range).float().mean()),
    }


def train(config: WanGRPOConfig, model=None, reward_fn=None, stop_after: int | None = None) -> dict:
    """Run GRPO on `config.prompts`, resuming from the newest checkpoint in `output_dir`; the trained LoRA
    goes to `output_dir/final`. `model`: a `WanPipeline` (trained in place); None loads `config.pipeline`.
    `reward_fn(videos, prompts, metadata) -> (scores, info)`; None scores with `DeScoreReward` of
    `config.reward_model`. `stop_after` ends the run after that many steps, as an interruption would.
    Under `accelerate launch` each process samples its own share of each epoch of prompts and the
    gradients are averaged. Returns the trainer state (`training/run.py`): each step's mean reward,
    loss, KL and clip fraction."""
    if not config.prompts:
        raise DeScoreInputError("prompts: expected at least one prompt")
    if reward_fn is None and config.reward_model is None and config.reward_server is None:
        raise DeScoreInputError(
            "reward_model: expected a DeScore checkpoint, or reward_server a server's URL (or pass reward_fn to train)"
        )
    run, pipeline, optimizer = start_lora_training(config, model, "wan grpo")
    accelerator, transformer = run.accelerator, pipeline.transformer
    if reward_fn is None:
        from ..integrations.reward import DeScoreReward

        dtype = torch.bfloat16 if accelerator.device.type == "cuda" else None  # 8B: 16 GB beside the generator
        reward_fn = DeScoreReward(
            None if config.reward_server else config.reward_model,
            think=config.reward_think,
            device=accelerator.device,
            dtype=dtype,
            engine=config.reward_engine,
            server=config.reward_server,
        )
    trained = config.train_steps if config.train_steps is not None else list(range(config.num_inference_steps - 1))
    stop = run.finished
    while not stop:
        rank, processes = accelerator.process_index, accelerator.num_processes
        chosen = epoch_batch(len(config.prompts), run.step, config.prompts_per_step, config.seed, rank, processes)
        prompts = [config.prompts[i] for i in chosen for _ in range(config.group_size)]
        generator = run.seed_step()
        transformer.eval()
        with run.autocast():
            trajectory = sample_with_log_probs(pipeline, prompts, config, config.noise_level, generator)
        rewards, _ = reward_fn(trajectory.videos, prompts, [{} for _ in prompts])
        rewards = np.asarray(rewards, dtype=np.float32)
        filled = torch.as_tensor(np.nan_to_num(rewards, nan=float(np.nanmean(rewards))))
        advantages = group_advantages(filled, config.group_size, bessel=False, clip=config.advantage_clip)
        advantages = advantages.to(trajectory.latents.device)
        transformer.train()
        totals = torch.zeros(3)  # loss, KL, clip fraction, averaged over the updates and trained steps
        shuffled = torch.randperm(len(prompts), generator=generator)
        updates = min(config.updates_per_batch, len(prompts))  # fewer prompts than asked: a smaller epoch
        for rows in shuffled.tensor_split(updates):
            mini_batch = trajectory.select(rows)
            for denoising_step in trained:
                with run.autocast():
                    loss, stats = policy_step_loss(
                        transformer, mini_batch, advantages[rows.to(advantages.device)], denoising_step, config
                    )
                run.backward(loss / len(trained))
                share = len(trained) * updates
                totals += torch.tensor([loss.item(), stats["kl"], stats["clip_fraction"]]) / share
            run.optimizer_step(optimizer)
        metrics = {"reward": float(np.nanmean(rewards)), **dict(zip(("loss", "kl", "clip_fraction"), totals.tolist()))}
        stop = run.end_step(metrics, stop_after=stop_after)
    return run.finish(lambda path, state: save_lora(pipeline, path, state))
