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
    pairs[0].reward_a, pairs[0].reward_b = 2.5, 0.0  # a reward model's scores; 0.0 is kept too
    write_jsonl(pairs, tmp_path / "pairs.jsonl")
    again = read_jsonl(tmp_path / "pairs.jsonl")
    assert [(p.id, p.label, p.cot_a, p.scores_b, p.dimension_labels, p.reward_a, p.reward_b) for p in again] == [
        (p.id, p.label, p.cot_a, p.scores_b, p.dimension_labels, p.reward_a, p.reward_b) for p in pairs
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

    base = "https://example.org/GenAI-Bench/videos/"  # the published rows: URLs, downloaded into video_root
    published = [{**row, "left_video": base + "a.mp4", "right_video": base + "b.mp4?download=1"} for row in rows]
    pairs = read_genai_bench(write_lines(videos / "published.jsonl", published), video_root=videos)
    assert [(p.video_a, p.video_b) for p in pairs] == [(videos / "a.mp4", videos / "b.mp4")] * 4
    missing = [{**published[0], "right_video": base + "not-downloaded.mp4"}]
    with pytest.raises(DataError, match=r"right_video file not found: .*not-downloaded.mp4 \(https://.*download it"):
        read_genai_bench(write_lines(videos / "missing.jsonl", missing), video_root=videos)


@pytest.mark.parametrize(
    "field, value",
    [
        ("dimension_labels", ["object", "A"]),
        ("dimension_labels", "A"),
        ("label", ["A"]),
        ("cot_a", 3),
        ("prompt", 1),
        ("reward_a", "high"),
    ],
)
def test_wrong_typed_fields_are_named_with_their_row(tmp_path, field, value):
    from descore_reward.synthetic import make_dataset

    path = make_dataset(tmp_path, 2, seed=0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1][field] = value
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=rf"{path.name}:2: {field} must"):
        read_jsonl(path)


def test_the_authors_stage_one_csv(tmp_path, capsys):
    import csv as csv_module

    from descore_reward.data import read_official_csv, read_pairs

    pairs = make_pairs(tmp_path, 3, seed=0)
    template = 'You judge AI videos. <video> The text prompt is: "{prompt}". Think, then answer.'
    rows = []
    for pair, gsb in zip(pairs, ["A", "same", "invalid"]):
        videos = [str(pair.video_a.relative_to(tmp_path)), str(pair.video_b.relative_to(tmp_path))]
        problem = template.replace("{prompt}", pair.prompt)
        rows.append({"videos": repr(videos), "problem": problem, "CoT_A": "a", "CoT_B": "b", "GSB": gsb})
    rows.append({"videos": "['only-one.mp4']", "problem": "no quotes here", "CoT_A": "", "CoT_B": "", "GSB": "A"})
    path = tmp_path / "stage1.csv"
    with path.open("w", newline="") as file:
        writer = csv_module.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DataError, match=r"stage1.csv:5: videos must be a list of two paths"):
        read_official_csv(path, template)
    rows.pop()
    with path.open("w", newline="") as file:
        writer = csv_module.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    read, skipped = read_official_csv(path, template)
    assert skipped == 1 and [p.label for p in read] == ["A", "tie"]
    assert [p.prompt for p in read] == [p.prompt for p in pairs[:2]], "the raw prompt comes back out of problem"
    assert read[0].cot_a == "a" and read[0].video_a == pairs[0].video_a
    assert [p.prompt for p in read_pairs(path)] == [p.prompt for p in pairs[:2]], "found in quotes without a template"
    assert "skipped 1 row(s) labelled invalid" in capsys.readouterr().out


def write_stage_two_csv(path, rows):
    """The authors' stage-2 CSV: `(videos, problem, answer)` rows under their header."""
    import csv

    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["videos", "problem", "answer"])
        writer.writerows([repr(videos), problem, answer] for videos, problem, answer in rows)
    return path


def test_the_authors_stage_two_csv(tmp_path):

    from descore_reward.data import read_official_csv

    pair = make_pairs(tmp_path, 1, seed=1)[0]
    scores_1 = {"subject": 2, "dynamics": "1", "camera": "N/A", "environment": 2, "style": 0}
    scores_2 = {"subject": 0, "dynamics": 0, "camera": "N/A", "environment": 1, "style": 0}
    answer = json.dumps({"video_1_scores": scores_1, "video_2_scores": scores_2, "gsb_result": "Video 1 is better"})
    videos = [str(pair.video_a.relative_to(tmp_path)), str(pair.video_b.relative_to(tmp_path))]
    path = write_stage_two_csv(
        tmp_path / "stage2.csv",
        [
            (videos, f'<video> Prompt: "{pair.prompt}"', f"<answer>{answer}</answer>"),
            (videos, f'<video> Prompt: "{pair.prompt}"', "<answer>{not json</answer>"),
        ],
    )
    with pytest.raises(DataError, match=r"stage2.csv:3: answer must hold"):
        read_official_csv(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")
    (read,), skipped = read_official_csv(path)
    assert skipped == 0 and read.label == "A" and read.prompt == pair.prompt
    assert read.scores_a == scores_1 and read.scores_b == scores_2


def test_stage_two_recovers_a_prompt_of_several_lines_with_the_authors_template(tmp_path):
    """Their stage-2 `problem` puts the prompt unquoted before `**Video**: <video>`: without the
    template the prompt's second line is lost; stage 2's `instruction_file` recovers it whole."""

    from descore_reward.data import read_pairs
    from descore_reward.training import rl

    pair = make_pairs(tmp_path, 1, seed=1)[0]
    template = "Judge the video.\n**Text prompt**: {prompt}\n**Video**: <video>\nThink, then answer."
    prompt = "a red square moves right\nthen stops"
    scores = {"subject": 2, "dynamics": 1, "camera": "N/A", "environment": 2, "style": 0}
    answer = json.dumps({"video_1_scores": scores, "video_2_scores": scores, "gsb_result": "Video 2 is better"})
    videos = [str(pair.video_a.relative_to(tmp_path)), str(pair.video_b.relative_to(tmp_path))]
    path = write_stage_two_csv(
        tmp_path / "stage2.csv", [(videos, template.replace("{prompt}", prompt), f"<answer>{answer}</answer>")]
    )
    assert read_pairs(path)[0].prompt == "a red square moves right", "the heuristic stops at the line's end"
    assert read_pairs(path, template=template)[0].prompt == prompt
    (tmp_path / "instruction.txt").write_text(template)
    config = rl.RLConfig(
        model=str(tmp_path / "no-model"),
        train_data=str(path),
        instruction_file=str(tmp_path / "instruction.txt"),
        output_dir=str(tmp_path / "rl"),
        report_to=None,
    )
    read = []
    original = rl.read_pairs
    rl.read_pairs = lambda *args, **kwargs: read.append(original(*args, **kwargs)) or read[-1]
    try:
        with pytest.raises(FileNotFoundError, match="no-model"):  # the pairs are read before the model loads
            rl.train(config)
    finally:
        rl.read_pairs = original
    assert read[0][0].prompt == prompt


def test_other_encodings_byte_order_marks_and_ragged_rows_are_read_or_named(videos):
    from descore_reward.data import read_manifest, read_pairs

    bom = "\ufeff"
    header = "path_A,path_B,A_model,B_model,prompt,VQ,MQ,TA,Overall\n"
    (videos / "bom.csv").write_text(bom + header + "a.mp4,b.mp4,x,y,a cat,A,A,A,A\n", encoding="utf-8")
    assert [p.label for p in read_videoalign_csv(videos / "bom.csv")] == ["A"], "a byte-order mark is skipped"
    (videos / "bom.jsonl").write_text(bom + json.dumps(GOOD) + "\n", encoding="utf-8")
    assert [p.id for p in read_jsonl(videos / "bom.jsonl")] == ["1"]
    (videos / "latin1.jsonl").write_bytes(json.dumps({**GOOD, "prompt": "café"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl: not UTF-8 text \(byte 0xe9 at offset \d+\); save it as UTF-8"):
        read_pairs(videos / "latin1.jsonl")
    (videos / "ragged.csv").write_text(header + "a.mp4,b.mp4,x,y,a cat,A\na.mp4,b.mp4,x,y,a dog,A,A,A,A,extra\n")
    with pytest.raises(DataError) as error:
        read_videoalign_csv(videos / "ragged.csv")
    assert "ragged.csv:2: 6 field(s), the header has 9" in str(error.value)
    assert "ragged.csv:3: 10 field(s), the header has 9" in str(error.value)
    (videos / "manifest.csv").write_text(bom + "video,prompt\na.mp4,a cat\nb.mp4\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"manifest.csv:3: 1 field\(s\), the header has 2"):
        read_manifest(videos / "manifest.csv")
    (videos / "manifest.csv").write_bytes("video,prompt\na.mp4,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="manifest.csv: not UTF-8 text"):
        read_manifest(videos / "manifest.csv")
    (videos / "unicode.jsonl").write_text(json.dumps({**GOOD, "prompt": "a\u2028cat"}, ensure_ascii=False) + "\n")
    assert read_jsonl(videos / "unicode.jsonl")[0].prompt == "a\u2028cat", "a line separator inside a string"
