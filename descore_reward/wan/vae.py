"""Videos to and from normalised Wan VAE latents (`(x - latents_mean) / latents_std`, as `WanPipeline`),
and an on-disk cache of the latents of video files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..atomic import atomic_write_bytes
from ..video import VideoSampling, load_video

# Every frame at full size: the VAE needs the 4k + 1 frames the pipeline wrote.
ALL_FRAMES = VideoSampling(max_pixels_per_frame=10**9, max_total_pixels=10**12).spread()


def _statistics(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE's per-channel latent mean and std, shaped `(1, C, 1, 1, 1)` like `like`."""
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(like)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(like)
    return mean, std


@torch.no_grad()
def encode_video(pipeline, path: str | Path) -> torch.Tensor:
    """Normalised latents `(C, T', H', W')` of a video file (all its frames)."""
    frames = load_video(path, ALL_FRAMES).frames.float() / 127.5 - 1.0  # (T, C, H, W) in [-1, 1]
    video = frames.permute(1, 0, 2, 3)[None].to(pipeline.vae.device, pipeline.vae.dtype)
    latents = pipeline.vae.encode(video).latent_dist.mode()
    mean, std = _statistics(pipeline.vae, latents)
    return ((latents - mean) / std)[0]


@torch.no_grad()
def decode_latents(pipeline, latents: torch.Tensor) -> torch.Tensor:
    """Videos `(B, T, C, H, W)` in [0, 1] from normalised latents `(B, C, T', H', W')`."""
    mean, std = _statistics(pipeline.vae, latents)
    decoded = pipeline.vae.decode((latents * std + mean).to(pipeline.vae.dtype), return_dict=False)[0]
    return pipeline.video_processor.postprocess_video(decoded, output_type="pt")


def cached_latents(pipeline, path: str | Path, cache_dir: str | Path | None) -> torch.Tensor:
    """`encode_video(pipeline, path)`, kept in `cache_dir` (one safetensors file per video) when it is given.

    An entry is keyed by the file's resolved path, size and modification time and by the VAE's config
    (with the path it was loaded from), so an edited video or another VAE is encoded afresh. Entries are
    written atomically, so processes sharing a cache never read a partial file.
    """
    if cache_dir is None:
        return encode_video(pipeline, path)
    path = Path(path).resolve()
    stat = path.stat()
    key = json.dumps(
        [str(path), stat.st_size, stat.st_mtime_ns, dict(pipeline.vae.config)], sort_keys=True, default=str
    )
    entry = Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.safetensors"
    if entry.is_file():
        return load_file(entry)["latents"].to(pipeline.vae.device, pipeline.vae.dtype)
    latents = encode_video(pipeline, path)
    atomic_write_bytes(entry, save({"latents": latents.contiguous().cpu()}))
    return latents
