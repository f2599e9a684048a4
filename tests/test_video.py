import numpy as np
import pytest
import torch
from PIL import Image

from descore_reward.video import VideoInputError, VideoSampling, load_video, sample_indices


def test_sample_indices_follow_fps_and_bounds():
    sampling = VideoSampling(fps=2.0, min_frames=4, max_frames=10)
    assert len(sample_indices(120, 24.0, sampling)) == 10  # 5 s at 2 fps
    assert len(sample_indices(48, 24.0, sampling)) == 4  # 2 s at 2 fps, raised to min_frames
    assert len(sample_indices(600, 24.0, sampling)) == 10  # capped at max_frames
    assert sample_indices(3, 24.0, sampling) == [0, 1, 2]  # never more frames than the video has
    indices = sample_indices(120, 24.0, sampling)
    assert indices[0] == 0 and indices[-1] == 119 and indices == sorted(indices)


def test_every_input_format_gives_the_same_frames():
    rng = np.random.default_rng(0)
    thwc = rng.integers(0, 256, size=(8, 32, 48, 3), dtype=np.uint8)
    sources = {
        "numpy THWC uint8": thwc,
        "torch TCHW uint8": torch.from_numpy(thwc).permute(0, 3, 1, 2),
        "torch THWC float": torch.from_numpy(thwc).float() / 255.0,
        "numpy TCHW float": thwc.transpose(0, 3, 1, 2).astype(np.float32) / 255.0,
        "PIL list": [Image.fromarray(frame) for frame in thwc],
    }
    expected = load_video(thwc).frames
    for name, source in sources.items():
        video = load_video(source)
        assert video.frames.dtype == torch.uint8 and video.frames.shape == expected.shape, name
        assert torch.equal(video.frames, expected), name
    assert video.metadata.fps == VideoSampling().input_fps


def test_decodes_a_written_mp4(synthetic_videos):
    video = load_video(synthetic_videos[0], VideoSampling(fps=4.0))
    assert video.frames.shape[1:] == (3, 64, 64)
    assert video.metadata.total_num_frames == 16 and video.metadata.fps == pytest.approx(8.0)
    assert len(video.metadata.frames_indices) == video.frames.shape[0] == 8


def test_decodes_every_real_video(real_videos):
    for path in real_videos:
        video = load_video(path)
        assert video.frames.dtype == torch.uint8 and video.frames.shape[1] == 3, path
        assert 4 <= video.frames.shape[0] <= 12, path  # about 5 s at 2 fps
        assert video.frames.float().std() > 1.0, path  # real content, not blank frames


@pytest.mark.parametrize(
    "source, message",
    [
        (np.zeros((8, 32, 32), dtype=np.uint8), "expected 4 dimensions"),
        (np.zeros((8, 32, 32, 4), dtype=np.uint8), "3 colour channels"),
        (np.zeros((8, 32, 32, 3), dtype=np.int32), "unsupported dtype"),
        (np.full((8, 32, 32, 3), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.full((8, 32, 32, 3), 2.0, dtype=np.float32), r"must lie in \[0, 1\]"),
        (np.full((8, 32, 32, 3), -0.5, dtype=np.float32), r"must lie in \[0, 1\]"),
        (np.zeros((0, 32, 32, 3), dtype=np.uint8), "empty"),
        ([], "empty"),
        ([Image.new("RGB", (8, 8)), "frame"], "frame 1 is a str"),
        ([Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8))], "different sizes"),
        (42, "expected a file path"),
    ],
)
def test_bad_in_memory_input_is_named(source, message):
    with pytest.raises(VideoInputError, match=message) as error:
        load_video(source, name="videos[3]")
    assert "videos[3]" in str(error.value)


def test_bad_files_are_named(tmp_path, real_videos):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(real_videos[0].read_bytes()[:20_000])
    cases = {
        tmp_path / "missing.mp4": "no such video file",
        tmp_path: "is a directory",
        empty: "empty",
        text: "not a video file, or truncated",
        truncated: "not a video file, or truncated",
    }
    for path, message in cases.items():
        with pytest.raises(VideoInputError, match=message) as error:
            load_video(path)
        assert str(path) in str(error.value)


def test_sampling_config_is_checked():
    with pytest.raises(ValueError, match="min_frames"):
        VideoSampling(min_frames=0)
    with pytest.raises(ValueError, match="fps"):
        VideoSampling(fps=0)


def test_large_files_are_decoded_at_the_pixel_cap(tmp_path):
    from descore_reward.synthetic import write_mp4

    frames = np.zeros((4, 480, 640, 3), dtype=np.uint8)
    frames[:, :, 320:] = 255  # left half black, right half white: the layout must survive the resize
    path = write_mp4(frames, tmp_path / "large.mp4")
    video = load_video(path, VideoSampling(max_pixels_per_frame=64 * 64))
    _, _, height, width = video.frames.shape
    assert height * width <= 64 * 64 and abs(width / height - 640 / 480) < 0.1
    assert video.frames[..., : width // 3].float().mean() < 30 and video.frames[..., -width // 3 :].float().mean() > 220
    within = VideoSampling(max_pixels_per_frame=480 * 640)
    assert load_video(path, within).frames.shape[2:] == (480, 640), "frames within the cap are decoded as they are"


def test_links_and_unreadable_files_say_what_is_wrong(tmp_path, synthetic_videos):
    import os

    loop = tmp_path / "loop.mp4"
    loop.symlink_to(tmp_path / "loop.mp4")
    dangling = tmp_path / "dangling.mp4"
    dangling.symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(VideoInputError, match="symbolic link loop"):
        load_video(loop)
    with pytest.raises(VideoInputError, match="broken symbolic link"):
        load_video(dangling)
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(synthetic_videos[0].read_bytes())
    locked.chmod(0)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # as another user when the tests run as root, who can read anything
        message = b"read it"
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            load_video(locked)
        except Exception as error:
            message = f"{type(error).__name__}: {error}".encode()
        finally:
            os.write(writer, message)
            os._exit(0)
    os.close(writer)
    message = os.read(reader, 4096).decode()
    os.waitpid(child, 0)
    assert message.startswith(f"VideoInputError: {locked}: permission denied"), message


def test_in_memory_frames_are_checked_and_converted_after_sampling():
    long_clip = torch.rand(400, 3, 8, 8)
    long_clip[1, 0, 0, 0] = float("nan")  # frame 1 is never sampled from 400 frames at 2 of 16 fps
    video = load_video(long_clip)
    assert 1 not in video.metadata.frames_indices and video.frames.dtype == torch.uint8


def test_files_the_decoder_or_processor_refuses_are_named_by_the_up_front_check(tmp_path, tiny_model):
    """Audio-only files, GIFs, WebM, and frames of an aspect ratio the processor refuses: the check that
    runs before the backbone names each, and what it passes scores."""
    import subprocess

    import imageio_ffmpeg
    import numpy as np

    from descore_reward.synthetic import write_mp4
    from descore_reward.video import VideoInputError, check_video_file

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()

    def make(name, *arguments):
        subprocess.run([ffmpeg, "-y", "-loglevel", "error", *arguments, str(tmp_path / name)], check=True)
        return tmp_path / name

    audio = make("speech.mp4", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac")
    gif = make("anim.gif", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8", "-t", "1")
    webm = make("clip.webm", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8", "-t", "1", "-c:v", "libvpx-vp9")
    banner = write_mp4(np.zeros((4, 16, 4000, 3), np.uint8), tmp_path / "banner.mp4")
    for path, message in ((audio, "cannot open it as a video"), (gif, "cannot open it as a video")):
        with pytest.raises(VideoInputError, match=str(path.name)) as error:
            check_video_file(path)
        assert message in str(error.value)
    with pytest.raises(VideoInputError, match=r"banner.mp4: frames of 16x4000 pixels .* at most 200"):
        tiny_model.score([webm, banner], "a test pattern", think=False)
    with pytest.raises(VideoInputError, match=r"videos\[1\]: frames of 8x1700 pixels"):
        tiny_model.score([torch.rand(4, 3, 64, 64), torch.rand(4, 3, 8, 1700)], "p", think=False)
    assert len(tiny_model.score([webm], "a test pattern", think=False)) == 1, "WebM decodes and scores"
