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

import dataclasses
import errno
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.video_utils import VideoMetadata

from .errors import DeScoreInputError, first_line

VideoSource = str | os.PathLike | torch.Tensor | np.ndarray | list  # a list of PIL images


class VideoInputError(DeScoreInputError):
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

    def spread(self, frames: int | None = None) -> VideoSampling:
        """These settings with `frames` frames spread evenly over the whole video (never more than it
        has), or every frame with None."""
        return dataclasses.replace(self, fps=1e6, min_frames=frames or 1, max_frames=frames or 10**6)

    def __post_init__(self):
        if not self.fps > 0 or not self.input_fps > 0:
            raise DeScoreInputError(
                f"VideoSampling: fps and input_fps must be positive, got {self.fps}, {self.input_fps}"
            )
        if not 1 <= self.min_frames <= self.max_frames:
            raise DeScoreInputError(
                f"VideoSampling: need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
            )
        if not 0 < self.min_pixels_per_frame <= self.max_pixels_per_frame <= self.max_total_pixels:
            raise DeScoreInputError(
                "VideoSampling: need 0 < min_pixels_per_frame <= max_pixels_per_frame <= max_total_pixels"
            )


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
    """Decode or take `source`, sample its frames, and validate it. Raises `VideoInputError`.

    Files are decoded at no more than `sampling.max_pixels_per_frame` pixels per frame (aspect kept),
    so memory follows the pixel cap, not the file's resolution. In-memory videos are checked and
    converted after their frames are sampled, so unsampled frames cost nothing.
    """
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(source), sampling)
    name = name or "video"
    if isinstance(source, (list, tuple)):
        _check_pil(source, name)
        indices = sample_indices(len(source), sampling.input_fps, sampling)
        frames = _frames_from_pil([source[i] for i in indices])
    elif isinstance(source, (torch.Tensor, np.ndarray)):
        frames = _channels_first(source, name)
        indices = sample_indices(frames.shape[0], sampling.input_fps, sampling)
        frames = _to_uint8(frames[indices], name)
    else:
        raise VideoInputError(
            f"{name}: expected a file path, a (T, C, H, W) or (T, H, W, C) tensor/array, or a list of PIL "
            f"images, got {type(source).__name__}"
        )
    check_frame_size(frames.shape[2], frames.shape[3], name)
    total = len(source) if isinstance(source, (list, tuple)) else source.shape[0]
    shape = (total, frames.shape[2], frames.shape[3])
    return Video(frames, _metadata(shape, sampling.input_fps, indices), name)


def metadata_fields(metadata: VideoMetadata) -> dict:
    """The fields of a sampled video's metadata that its prompt depends on (the frames' timestamps), as a
    plain dict: what vLLM takes beside the frames, and what the server's clients send."""
    return {
        "fps": metadata.fps,
        "total_num_frames": metadata.total_num_frames,
        "frames_indices": list(metadata.frames_indices),
        "width": metadata.width,
        "height": metadata.height,
        "duration": metadata.duration,
    }


def _metadata(shape: tuple, fps: float, indices: list[int]) -> VideoMetadata:
    total, height, width = shape[0], shape[-2], shape[-1]
    return VideoMetadata(
        total_num_frames=total, fps=float(fps), width=width, height=height, duration=total / fps, frames_indices=indices
    )


def _check_path(path: Path) -> None:
    """Raise `VideoInputError` saying what is wrong with `path` when it is not a readable, non-empty file."""
    try:
        info = path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise VideoInputError(f"{path}: symbolic link loop, it never reaches a file") from None
        if error.errno == errno.EACCES:
            raise VideoInputError(f"{path}: permission denied, a folder on its path cannot be searched") from None
        if path.is_symlink():
            raise VideoInputError(f"{path}: broken symbolic link to {os.readlink(path)}") from None
        raise VideoInputError(f"{path}: no such video file") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoInputError(f"{path}: is a directory, expected a video file")
    if info.st_size == 0:
        raise VideoInputError(f"{path}: the file is empty")
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        raise VideoInputError(f"{path}: permission denied, cannot read the file") from None


def _open_reader(path: Path):
    import decord

    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        return reader, len(reader), float(reader.get_avg_fps())
    except Exception as error:  # decord raises its own DECORDError and RuntimeError
        reason = first_line(error)
        raise VideoInputError(f"{path}: cannot open it as a video: not a video file, or truncated ({reason})") from None


# Qwen2/2.5/3-VL processors refuse frames whose long side is more than this many times the short one.
MAX_ASPECT_RATIO = 200


def check_frame_size(height: int, width: int, name: str) -> None:
    """`VideoInputError` for frames the backbone's processor would refuse (an extreme aspect ratio)."""
    ratio = max(height, width) / max(1, min(height, width))
    if ratio > MAX_ASPECT_RATIO:
        raise VideoInputError(
            f"{name}: frames of {height}x{width} pixels have an aspect ratio of {ratio:.0f}; "
            f"the backbone's processor accepts at most {MAX_ASPECT_RATIO}"
        )


def check_video_file(path: str | os.PathLike) -> None:
    """Open `path` as a video and decode its first frame, as every later path will; raises
    `VideoInputError` naming what is wrong (not a video, no frames, frames the backbone refuses)."""
    _open_video(Path(path))


def _open_video(path: Path):
    """`(reader, frame count, fps, height, width)` of the video file `path`, its first frame decoded and
    its size checked; `VideoInputError` naming what is wrong."""
    _check_path(path)
    reader, total, source_fps = _open_reader(path)
    if total == 0:
        raise VideoInputError(f"{path}: the video has no decodable frames")
    try:
        height, width = reader.next().shape[:2]
    except Exception as error:  # decord's own errors
        raise VideoInputError(f"{path}: decoding failed, the file may be truncated ({first_line(error)})") from None
    check_frame_size(height, width, str(path))
    return reader, total, source_fps, height, width


def decode_size(height: int, width: int, max_pixels: int) -> tuple[int, int] | None:
    """`(height, width)` within `max_pixels`, aspect kept, even sides; None when the frame already fits."""
    if height * width <= max_pixels:
        return None
    scale = math.sqrt(max_pixels / (height * width))
    return max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2)


def _load_file(path: Path, sampling: VideoSampling) -> Video:
    reader, total, source_fps, height, width = _open_video(path)
    if not (math.isfinite(source_fps) and source_fps > 0):
        source_fps = sampling.input_fps
    indices = sample_indices(total, source_fps, sampling)
    size = decode_size(height, width, sampling.max_pixels_per_frame)
    try:
        if size is None:
            frames = torch.from_numpy(reader.get_batch(indices).asnumpy())
        else:  # one full-size frame at a time, shrunk at once: memory follows the pixel cap
            frames = torch.cat([_shrink(reader.get_batch([index]).asnumpy(), size) for index in indices])
    except Exception as error:
        raise VideoInputError(f"{path}: decoding failed, the file may be truncated ({first_line(error)})") from None
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise VideoInputError(f"{path}: decoding gave frames of shape {tuple(frames.shape)}, expected (T, H, W, 3)")
    frames = frames.permute(0, 3, 1, 2).contiguous()
    metadata = _metadata((total, frames.shape[2], frames.shape[3]), source_fps, indices)
    return Video(frames, metadata, str(path))


def _shrink(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """`(T, H, W, 3)` uint8 frames resized to `size` (antialiased bilinear), still `(T, h, w, 3)` uint8."""
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=size, mode="bilinear", antialias=True
    )
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _channels_first(array: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """An in-memory video as a `(T, 3, H, W)` tensor view, shape checked, dtype untouched."""
    if isinstance(array, np.ndarray):
        frames = torch.from_numpy(array if all(step >= 0 for step in array.strides) else array.copy())
    else:
        frames = array.detach()
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
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise VideoInputError(f"{name}: unsupported dtype {frames.dtype}, expected uint8 or float in [0, 1]")
    return frames


def _to_uint8(frames: torch.Tensor, name: str) -> torch.Tensor:
    """`(T, 3, H, W)` uint8 or float in [0, 1] frames as contiguous uint8 on the CPU; floats are checked."""
    if frames.dtype == torch.uint8:
        return frames.cpu().contiguous()
    frames = frames.float().cpu()
    if not torch.isfinite(frames).all():
        raise VideoInputError(f"{name}: contains NaN or infinite values")
    low, high = frames.min().item(), frames.max().item()
    if low < 0.0 or high > 1.0:
        raise VideoInputError(f"{name}: float frames must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    return (frames * 255.0).round().to(torch.uint8).contiguous()


def _check_pil(images: list, name: str) -> None:
    from PIL import Image

    if len(images) == 0:
        raise VideoInputError(f"{name}: the list of frames is empty")
    for index, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise VideoInputError(f"{name}: frame {index} is a {type(image).__name__}, expected a PIL image")
    if len({image.size for image in images}) != 1:
        sizes = sorted({(image.height, image.width) for image in images})
        raise VideoInputError(f"{name}: frames have different sizes {sizes}")


def _frames_from_pil(images: list) -> torch.Tensor:
    arrays = [np.asarray(image.convert("RGB")) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
