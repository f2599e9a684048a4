"""Peak memory of decoding a large video file: frames decoded at full size and then capped (what
DeScore did before) against decoding one frame at a time and shrinking it at once (what `load_video`
does now), and against a video already at the 448-px cap. Each case runs in its own process; the
figure is that process's peak resident memory.

    python benchmarks/bench_video_memory.py [--width 4000 --height 3000 --seconds 16 --fps 8]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {
    "full-size decode, then cap (before)": "full",
    "frame-by-frame decode at the cap (now)": "capped",
}


def write_clip(path: Path, width: int, height: int, seconds: int, fps: int) -> Path:
    """A moving gradient, written frame by frame (no whole clip in memory)."""
    import imageio.v2 as imageio

    ys, xs = np.mgrid[0:height, 0:width]
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=5, macro_block_size=2) as writer:
        for t in range(seconds * fps):
            value = ((xs + ys + 40 * t) % 256).astype(np.uint8)
            writer.append_data(np.stack([value, value[::-1], np.full_like(value, 128)], axis=-1))
    return path


def measure(mode: str, path: Path) -> None:
    """In a child process: decode `path` as `mode`, print peak RSS in MiB and seconds."""
    import torch

    from descore_reward.video import VideoSampling, decode_size, load_video, sample_indices

    sampling = VideoSampling()
    start = time.perf_counter()
    if mode == "full":
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        indices = sample_indices(len(reader), reader.get_avg_fps(), sampling)
        frames = torch.from_numpy(reader.get_batch(indices).asnumpy())
        size = decode_size(frames.shape[1], frames.shape[2], sampling.max_pixels_per_frame)
        frames = frames.permute(0, 3, 1, 2).float()
        if size is not None:
            frames = torch.nn.functional.interpolate(frames, size=size, mode="bilinear", antialias=True)
    else:
        frames = load_video(path, sampling).frames
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{peak:.0f} {seconds:.2f} {tuple(frames.shape)}")


def run_case(mode: str, path: Path) -> tuple[float, float, str]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", mode, str(path)], capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=2)
    return float(out[0]), float(out[1]), out[2].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--seconds", type=int, default=16)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure[0], Path(args.measure[1]))
        return
    with tempfile.TemporaryDirectory() as scratch:
        print(f"writing a {args.seconds} s {args.width}x{args.height} clip at {args.fps} fps ...", flush=True)
        large = write_clip(Path(scratch) / "large.mp4", args.width, args.height, args.seconds, args.fps)
        small = write_clip(Path(scratch) / "small.mp4", 448, 336, args.seconds, args.fps)
        rows = [(name, *run_case(mode, large)) for name, mode in CASES.items()]
        rows.append(("448x336 file, at the cap already", *run_case("capped", small)))
    print("\n| case | peak RSS (MiB) | seconds | frames |\n|---|---|---|---|")
    for name, peak, seconds, shape in rows:
        print(f"| {name} | {peak:.0f} | {seconds:.2f} | {shape} |")
    before, now, small = (row[1] for row in rows)
    print(f"\npeak memory, before / now: {before / now:.1f}x; now / 448-px file: {now / small:.2f}x")


if __name__ == "__main__":
    main()
