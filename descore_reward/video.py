"""Video input: decode or accept frames, sample them by time, and check them before any model work.

Accepted sources:
- a path to a video file, decoded with decord;
- a `(T, C, H, W)` or `(T, H, W, C)` torch tensor or NumPy array, uint8 in [0, 255] or float in [0, 1];
- a list of PIL images (one per frame).

`load_video` returns a `Video`: the sampled frames as a `(T, 3, H, W)` uint8 tensor plus the
`VideoMetadata` that `Qwen3VLVideoProcessor` needs to write the frames' timestamps into the prompt.
Every problem raises `VideoInputError` naming the file or argument, before the backbone runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.video_utils import VideoMetadata

VideoSource = str | os.PathLike | torch.Tensor | np.ndarray | list  # a list of PIL images


class VideoInputError(ValueError):
    """A video (file, tensor or frame list) that cannot be used, with the reason and its name."""


@dataclass(frozen=True)
class VideoSampling:
    """How frames are sampled from a video and how many pixels the backbone may spend on them.

    fps: frames sampled per second of video (Qwen's default is 2).
    min_frames / max_frames: bounds on the sampled frame count (never more than the video has).
    max_pixels_per_frame: per-frame pixel cap (448 * 448 by default, as VideoAlign and Qwen use).
    min_pixels_per_frame: frames smaller than this are upscaled.
    max_total_pixels: cap over all sampled frames together.
    input_fps: frame rate assumed for in-memory frames (tensors, arrays, PIL lists); 16 is the rate
        Wan-2.1 exports at. Pass the real rate when you know it.
    """

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 64
    max_pixels_per_frame: int = 448 * 448
    min_pixels_per_frame: int = 32 * 32
    max_total_pixels: int = 448 * 448 * 64
    input_fps: float = 16.0

    def __post_init__(self):
        if not self.fps > 0 or not self.input_fps > 0:
            raise ValueError(f"VideoSampling: fps and input_fps must be positive, got {self.fps}, {self.input_fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"VideoSampling: need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
            )
        if not 0 < self.min_pixels_per_frame <= self.max_pixels_per_frame <= self.max_total_pixels:
            raise ValueError("VideoSampling: need 0 < min_pixels_per_frame <= max_pixels_per_frame <= max_total_pixels")


@dataclass
class Video:
    """Sampled frames `(T, 3, H, W)` uint8, their metadata, and a name for messages."""

    frames: torch.Tensor
    metadata: VideoMetadata
    name: str


def sample_indices(total_frames: int, source_fps: float, sampling: VideoSampling) -> list[int]:
    """Indices of the frames to keep: `sampling.fps` per second, uniformly spread, within the bounds."""
    wanted = round(total_frames / source_fps * sampling.fps)
    count = min(max(wanted, sampling.min_frames), sampling.max_frames, total_frames)
    return np.linspace(0, total_frames - 1, max(count, 1)).round().astype(int).tolist()


def load_video(source: VideoSource, sampling: VideoSampling = VideoSampling(), name: str | None = None) -> Video:
    """Decode or take `source`, sample its frames, and validate it. Raises `VideoInputError`."""
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(source), sampling)
    name = name or "video"
    if isinstance(source, (list, tuple)):
        frames = _frames_from_pil(source, name)
    elif isinstance(source, (torch.Tensor, np.ndarray)):
        frames = _frames_from_array(source, name)
    else:
        raise VideoInputError(
            f"{name}: expected a file path, a (T, C, H, W) or (T, H, W, C) tensor/array, or a list of PIL "
            f"images, got {type(source).__name__}"
        )
    indices = sample_indices(frames.shape[0], sampling.input_fps, sampling)
    return Video(frames[indices], _metadata(frames.shape, sampling.input_fps, indices), name)


def _metadata(shape: tuple, fps: float, indices: list[int]) -> VideoMetadata:
    total, height, width = shape[0], shape[-2], shape[-1]
    return VideoMetadata(
        total_num_frames=total, fps=float(fps), width=width, height=height, duration=total / fps, frames_indices=indices
    )


def _load_file(path: Path, sampling: VideoSampling) -> Video:
    if not path.exists():
        raise VideoInputError(f"{path}: no such video file")
    if path.is_dir():
        raise VideoInputError(f"{path}: is a directory, expected a video file")
    if path.stat().st_size == 0:
        raise VideoInputError(f"{path}: the file is empty")
    import decord

    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        total = len(reader)
        source_fps = float(reader.get_avg_fps())
    except Exception as error:  # decord raises its own DECORDError and RuntimeError
        reason = _first_line(error)
        raise VideoInputError(f"{path}: cannot open it as a video: not a video file, or truncated ({reason})") from None
    if total == 0:
        raise VideoInputError(f"{path}: the video has no decodable frames")
    if not (math.isfinite(source_fps) and source_fps > 0):
        source_fps = sampling.input_fps
    indices = sample_indices(total, source_fps, sampling)
    try:
        frames = torch.from_numpy(reader.get_batch(indices).asnumpy())
    except Exception as error:
        raise VideoInputError(f"{path}: decoding failed, the file may be truncated ({_first_line(error)})") from None
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise VideoInputError(f"{path}: decoding gave frames of shape {tuple(frames.shape)}, expected (T, H, W, 3)")
    frames = frames.permute(0, 3, 1, 2).contiguous()
    metadata = _metadata((total, frames.shape[2], frames.shape[3]), source_fps, indices)
    return Video(frames, metadata, str(path))


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _frames_from_array(array: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Validate an in-memory video and return it as `(T, 3, H, W)` uint8."""
    frames = torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array.detach()
    if frames.ndim != 4:
        raise VideoInputError(
            f"{name}: expected 4 dimensions (T, C, H, W) or (T, H, W, C), got shape {tuple(frames.shape)}"
        )
    channels_first = frames.shape[1] == 3 and frames.shape[-1] != 3
    if not channels_first and frames.shape[-1] == 3:
        frames = frames.permute(0, 3, 1, 2)
    elif not channels_first:
        raise VideoInputError(
            f"{name}: expected 3 colour channels in dimension 1 (T, C, H, W) or 3 (T, H, W, C), "
            f"got shape {tuple(frames.shape)}"
        )
    if frames.shape[0] == 0 or frames.shape[2] == 0 or frames.shape[3] == 0:
        raise VideoInputError(f"{name}: the video is empty, shape {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        return frames.cpu().contiguous()
    if not frames.is_floating_point():
        raise VideoInputError(f"{name}: unsupported dtype {frames.dtype}, expected uint8 or float in [0, 1]")
    frames = frames.float().cpu()
    if not torch.isfinite(frames).all():
        raise VideoInputError(f"{name}: contains NaN or infinite values")
    low, high = frames.min().item(), frames.max().item()
    if low < 0.0 or high > 1.0:
        raise VideoInputError(f"{name}: float frames must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    return (frames * 255.0).round().to(torch.uint8).contiguous()


def _frames_from_pil(images: list, name: str) -> torch.Tensor:
    from PIL import Image

    if len(images) == 0:
        raise VideoInputError(f"{name}: the list of frames is empty")
    arrays = []
    for index, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise VideoInputError(f"{name}: frame {index} is a {type(image).__name__}, expected a PIL image")
        arrays.append(np.asarray(image.convert("RGB")))
    if len({array.shape for array in arrays}) != 1:
        raise VideoInputError(f"{name}: frames have different sizes {sorted({a.shape[:2] for a in arrays})}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
