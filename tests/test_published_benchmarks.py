"""The benchmarks as published on the Hub: local parquet files in their published schemas (GenAI-Bench's
`video_generation`, MJ-Bench-Video, VideoGen-RewardBench), ties by each one's convention, and GenAI-Bench's
video URLs downloaded (resumably) from a server on 127.0.0.1."""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pyarrow
import pyarrow.parquet
import pytest

from descore_reward.cli import main
from descore_reward.data import DataError, read_genai_bench, read_mj_bench_video, read_videoalign_csv
from descore_reward.evaluation.download import benchmark_urls, download_videos


def write_parquet(rows: list[dict], path):
    path.parent.mkdir(parents=True, exist_ok=True)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def video_server(tmp_path, synthetic_videos):
    """The synthetic MP4 files served on 127.0.0.1; its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    for index, video in enumerate(synthetic_videos):
        shutil.copy(video, served / f"clip{index}.mp4")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def genai_rows(base: str) -> list[dict]:
    votes = ["leftvote", "rightvote", "tievote", "bothbad_vote"]
    return [
        {
            "prompt": f"prompt {i}",
            "left_model": "m1",
            "left_video": f"{base}/clip{i % 3}.mp4",
            "right_model": "m2",
            "right_video": f"{base}/clip{(i + 1) % 3}.mp4",
            "vote_type": vote,
        }
        for i, vote in enumerate(votes)
    ]


def test_genai_bench_videos_download_resumably_and_read_with_ties(video_server, tmp_path, capsys):
    rows = genai_rows(video_server)
    folder = tmp_path / "video_generation"  # the configuration's folder of parquet files
    write_parquet(rows[:2], folder / "test-00000-of-00002.parquet")
    write_parquet(rows[2:], folder / "test-00001-of-00002.parquet")
    assert benchmark_urls(folder) == [f"{video_server}/clip{i}.mp4" for i in (0, 1, 2)]
    with pytest.raises(DataError, match="left_video file not found: .*clip0.mp4 \\(http://127.0.0.1"):
        read_genai_bench(folder, video_root=tmp_path / "videos")
    command = ["download", "genai-bench", "--data", str(folder), "--video-root", str(tmp_path / "videos")]
    assert main(command) == 0
    assert "3 downloaded, 0 already" in capsys.readouterr().out
    assert main(command) == 0
    assert "0 downloaded, 3 already" in capsys.readouterr().out  # resumed: nothing fetched twice
    pairs = read_genai_bench(folder, video_root=tmp_path / "videos")
    assert [p.label for p in pairs] == ["A", "B", "tie", "tie"]  # tievote and bothbad_vote are ties
    assert pairs[0].source.endswith("test-00000-of-00002.parquet:1")


def test_a_failed_download_is_named_and_leaves_nothing_half_written(video_server, tmp_path, capsys):
    urls = [f"{video_server}/clip0.mp4", f"{video_server}/gone.mp4"]
    done = download_videos(urls, tmp_path / "videos", retries=1, backoff=0.01)
    assert (done.fetched, done.failed) == (1, {f"{video_server}/gone.mp4": "HTTP 404"})
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["clip0.mp4"]
    data = write_parquet([{**genai_rows(video_server)[0], "right_video": urls[1]}], tmp_path / "g.parquet")
    assert main(["download", "genai-bench", "--data", str(data), "--video-root", str(tmp_path / "v2")]) == 2
    assert "gone.mp4 (HTTP 404)" in capsys.readouterr().err


def test_mj_bench_video_reads_its_preferences_with_same_as_a_tie(tmp_path, synthetic_videos):
    for video in synthetic_videos:
        shutil.copy(video, tmp_path / video.name)
    preferences = ["Video 1 better", "Video 2 better", "Same"]
    rows = [
        {
            "caption": f"caption {i}",
            "video_0_path": synthetic_videos[i].name,
            "video_1_path": synthetic_videos[(i + 1) % 3].name,
            "overall_preference": preference,
            "alignment_preference": preferences[(i + 1) % 3],
        }
        for i, preference in enumerate(preferences)
    ]
    pairs = read_mj_bench_video(write_parquet(rows, tmp_path / "mj.parquet"))
    assert [(p.prompt, p.label) for p in pairs] == [("caption 0", "A"), ("caption 1", "B"), ("caption 2", "tie")]
    assert pairs[0].video_a == tmp_path / synthetic_videos[0].name
    assert pairs[0].dimension_labels == {"alignment": "B"}
    bad = write_parquet([{**rows[0], "overall_preference": "Video 3 better"}], tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet:1: overall_preference 'Video 3 better' is not one of"):
        read_mj_bench_video(bad)


def test_videogen_rewardbench_as_parquet_reads_as_its_csv(real_videos, tmp_path):
    import csv

    shared = real_videos[0].parents[1]
    shutil.copytree(shared, tmp_path / "videogen")  # shared/ is read-only on CI
    rows = list(csv.DictReader((tmp_path / "videogen" / "pairs.csv").open()))
    parquet = write_parquet(rows, tmp_path / "videogen" / "pairs.parquet")
    from_csv = read_videoalign_csv(tmp_path / "videogen" / "pairs.csv", label_column="TA")
    from_parquet = read_videoalign_csv(parquet, label_column="TA")
    assert [(p.prompt, p.video_a, p.label, p.dimension_labels) for p in from_parquet] == [
        (p.prompt, p.video_a, p.label, p.dimension_labels) for p in from_csv
    ]
