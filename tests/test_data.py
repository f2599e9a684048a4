"""Preference-data readers: this project's JSONL, the VideoAlign / VideoGen-RewardBench CSV,
GenAI-Bench rows; every bad row reported with its file and row."""

import json

import pytest

from descore_reward.data import DataError, read_genai_bench, read_jsonl, read_videoalign_csv, write_jsonl
from descore_reward.synthetic import make_pairs

from .conftest import REAL_VIDEOS


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(b"not checked here")
    return folder


def write_lines(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


GOOD = {"id": "1", "prompt": "a cat", "video_a": "a.mp4", "video_b": "b.mp4", "label": "A"}


def test_jsonl_round_trip(tmp_path):
    pairs = make_pairs(tmp_path, 12, seed=3)
    write_jsonl(pairs, tmp_path / "pairs.jsonl")
    again = read_jsonl(tmp_path / "pairs.jsonl")
    assert [(p.id, p.label, p.cot_a, p.scores_b, p.dimension_labels) for p in again] == [
        (p.id, p.label, p.cot_a, p.scores_b, p.dimension_labels) for p in pairs
    ]
    assert all(p.video_a.is_file() for p in again)
    assert read_jsonl(tmp_path / "pairs.jsonl", limit=5)[-1].id == pairs[4].id


def test_every_bad_row_is_reported_with_its_row(videos):
    path = write_lines(
        videos / "bad.jsonl",
        [
            GOOD,
            {**GOOD, "id": "2", "label": "C"},
            {**GOOD, "id": "1"},
            {**GOOD, "id": "4", "prompt": "  "},
            {**GOOD, "id": "5", "video_b": "missing.mp4"},
            {k: v for k, v in GOOD.items() if k != "prompt"},
            "{not json",
            {**GOOD, "id": "8", "scores_a": {"object": 9}},
            {**GOOD, "id": "9", "dimension_labels": {"style": "maybe"}},
        ],
    )
    with pytest.raises(DataError) as error:
        read_jsonl(path)
    message = str(error.value)
    for row, text in [
        (2, "label 'C'"),
        (3, "duplicate id '1'"),
        (4, "empty prompt"),
        (5, "missing.mp4"),
        (6, "missing field(s) ['prompt']"),
        (7, "not valid JSON"),
        (8, "scores_a"),
        (9, "dimension label style='maybe'"),
    ]:
        assert f"bad.jsonl:{row}: " in message and text in message, (row, text)
    assert "bad.jsonl:1:" not in message


def test_videoalign_csv_of_the_shared_examples():
    path = REAL_VIDEOS / "pairs.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with pytest.raises(DataError, match="no Overall column"):
        read_videoalign_csv(path)
    pairs = read_videoalign_csv(path, label_column="TA")
    assert [p.label for p in pairs] == ["A", "A", "tie"]
    assert pairs[0].dimension_labels == {"VQ": "B", "MQ": "B"}
    assert all(p.video_a.is_file() and p.video_b.is_file() for p in pairs)
    assert pairs[1].source.endswith("pairs.csv:3")


def test_videogen_rewardbench_csv(videos):
    header = "path_A,path_B,A_model,B_model,prompt,VQ,MQ,TA,Overall,fps_A,num_frames_A,fps_B,num_frames_B\n"
    rows = [
        "a.mp4,b.mp4,m1,m2,a cat,A,B,same,A,24,100,24,100\n",
        "a.mp4,b.mp4,m1,m2,a dog,B,B,B,same,8,1,8,1\n",
        "a.mp4,gone.mp4,m1,m2,a cow,A,A,A,X,8,1,8,1\n",
    ]
    (videos / "bench.csv").write_text(header + "".join(rows))
    with pytest.raises(DataError) as error:
        read_videoalign_csv(videos / "bench.csv")
    assert "bench.csv:4: label 'X'" in str(error.value) and "bench.csv:4: video_b file not found" in str(error.value)
    pairs = read_videoalign_csv(videos / "bench.csv", limit=2)
    assert [p.label for p in pairs] == ["A", "tie"] and pairs[0].dimension_labels == {"VQ": "A", "MQ": "B", "TA": "tie"}


def test_genai_bench_rows(videos):
    votes = ["leftvote", "rightvote", "tievote", "bothbad_vote"]
    rows = [
        {
            "prompt": f"p{i}",
            "left_video": "a.mp4",
            "right_video": "b.mp4",
            "vote_type": v,
            "left_model": "x",
            "right_model": "y",
        }
        for i, v in enumerate(votes)
    ]
    path = write_lines(videos / "genai.jsonl", rows)
    assert [p.label for p in read_genai_bench(path)] == ["A", "B", "tie", "tie"]
    parquet = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    parquet.write_table(pyarrow.Table.from_pylist(rows), videos / "genai.parquet")
    assert [p.label for p in read_genai_bench(videos / "genai.parquet", video_root=videos)] == ["A", "B", "tie", "tie"]
    bad = write_lines(videos / "genai_bad.jsonl", [{**rows[0], "vote_type": "upvote"}, {"prompt": "x"}])
    with pytest.raises(DataError) as error:
        read_genai_bench(bad)
    assert "genai_bad.jsonl:1: vote_type 'upvote'" in str(error.value)
    assert "genai_bad.jsonl:2: missing field(s)" in str(error.value)


@pytest.mark.parametrize(
    "field, value",
    [("dimension_labels", ["object", "A"]), ("dimension_labels", "A"), ("label", ["A"]), ("cot_a", 3), ("prompt", 1)],
)
def test_wrong_typed_fields_are_named_with_their_row(tmp_path, field, value):
    from descore_reward.synthetic import make_dataset

    path = make_dataset(tmp_path, 2, seed=0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1][field] = value
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=rf"{path.name}:2: {field} must"):
        read_jsonl(path)
