"""`descore eval`: resumable scoring, metrics, the paper's table and chart, on real files."""

import json

import pytest

from descore_reward.evaluation.runner import evaluate, read_scores, render_table, score_pairs
from descore_reward.synthetic import make_dataset

from .conftest import REAL_VIDEOS


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "tiny-descore"
    tiny_model.save_pretrained(path, include_backbone=True)
    return path


@pytest.fixture(scope="module")
def in_domain(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("in_domain"), 10, seed=1)


class Interrupted(Exception):
    pass


def test_interrupted_then_resumed_equals_uninterrupted(checkpoint, in_domain, tmp_path):
    from descore_reward.data import read_jsonl
    from descore_reward.modeling import DeScoreModel

    model = DeScoreModel.from_pretrained(checkpoint)
    pairs = read_jsonl(in_domain)
    real_score, calls = model.score, []

    def score_then_crash(*args, **kwargs):  # the real model; the "crash" comes after one batch
        if calls:
            raise Interrupted
        calls.append(1)
        return real_score(*args, **kwargs)

    model.score = score_then_crash
    with pytest.raises(Interrupted):
        score_pairs(model, pairs, tmp_path / "resumed", think=False, batch_size=4)
    assert len(read_scores([tmp_path / "resumed" / "scores-rank0.jsonl"])) == 4
    with (tmp_path / "resumed" / "scores-rank0.jsonl").open("a") as shard:
        shard.write('{"video": "torn')  # a crash in the middle of a write
    model.score = real_score
    resumed = evaluate(checkpoint, "in-domain", in_domain, tmp_path / "resumed", think=False, batch_size=4)
    lines = (tmp_path / "resumed" / "scores-rank0.jsonl").read_text().splitlines()
    unique_videos = len({(str(v), p.prompt) for p in pairs for v in (p.video_a, p.video_b)})
    assert len([line for line in lines if line.endswith("}")]) == unique_videos, "nothing scored twice"
    straight = evaluate(checkpoint, "in-domain", in_domain, tmp_path / "straight", think=False, batch_size=4)
    assert resumed["tiny-descore"]["in-domain"] == straight["tiny-descore"]["in-domain"]


def test_table_chart_and_baselines(checkpoint, in_domain, tmp_path):
    out = tmp_path / "out"
    results = evaluate(checkpoint, "in-domain", in_domain, out, think=False, name="DeScore (tiny)")
    ours = json.loads((out / "scores-in-domain.jsonl").read_text().splitlines()[0])
    baseline = out.parent / "baseline.jsonl"  # a baseline that always prefers the video with the shorter path
    rows = [
        {"video": r["video"], "prompt": r["prompt"], "reward": -len(r["video"])}
        for r in map(json.loads, (out / "scores-in-domain.jsonl").read_text().splitlines())
    ]
    baseline.write_text("".join(json.dumps(row) + "\n" for row in rows))
    results = evaluate(
        checkpoint,
        "in-domain",
        in_domain,
        out,
        think=False,
        name="DeScore (tiny)",
        baselines={"Shorter path": str(baseline)},
    )
    assert set(results) == {"DeScore (tiny)", "Shorter path"} and "reward" in ours
    metrics = json.loads((out / "metrics.json").read_text())
    value = metrics["DeScore (tiny)"]["in-domain"]["accuracy_with_ties"]
    table = (out / "table.md").read_text()
    assert table == render_table(metrics) and f"{value:.3f}" in table and "Shorter path" in table
    assert "| In-domain w/ tie | GenAI w/ tie | GenAI w/o tie | VideoGen w/ tie | VideoGen w/o tie |" in table
    assert (out / "table.png").read_bytes()[:4] == b"\x89PNG"
    # The synthetic prompts say nothing of style, so its labels are "N/A" and it has no accuracy.
    assert set(metrics["DeScore (tiny)"]["in-domain"]["dimensions"]) == {"subject", "dynamics", "camera", "environment"}
    with pytest.raises(ValueError, match="another run"):
        evaluate(checkpoint, "in-domain", in_domain, out, think=True)


def test_videogen_format_on_the_shared_real_videos(checkpoint, tmp_path):
    data = REAL_VIDEOS / "pairs.csv"
    if not data.exists():
        pytest.skip(f"{data} not found")
    results = evaluate(checkpoint, "videogen-rewardbench", data, tmp_path, think=False, label_column="TA", name="tiny")
    metrics = results["tiny"]["videogen-rewardbench"]
    assert metrics["pairs"] == 3 and metrics["human_ties"] == 1
    assert set(metrics["dimensions"]) == {"VQ", "MQ"}


def test_bad_benchmark_input_fails_before_the_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    from descore_reward.data import DataError

    with pytest.raises(DataError, match="bad.jsonl:1: missing field"):
        evaluate(tmp_path / "no-model-here", "in-domain", bad, tmp_path / "out")


def test_processes_split_the_videos_and_gather_them(checkpoint, in_domain, tmp_path):
    """Two ranks (run one after the other) each score their share; together they cover every video once."""
    from types import SimpleNamespace

    from descore_reward.data import read_jsonl
    from descore_reward.modeling import DeScoreModel

    model = DeScoreModel.from_pretrained(checkpoint)
    pairs = read_jsonl(in_domain)
    unique = {(str(v.resolve()), p.prompt) for p in pairs for v in (p.video_a, p.video_b)}
    for rank in (0, 1):
        process = SimpleNamespace(process_index=rank, num_processes=2, wait_for_everyone=lambda: None)
        gathered = score_pairs(model, pairs, tmp_path, think=False, batch_size=4, accelerator=process)
    shards = [(tmp_path / f"scores-rank{rank}.jsonl").read_text().splitlines() for rank in (0, 1)]
    assert shards[0] and shards[1] and len(shards[0]) + len(shards[1]) == len(unique)
    assert {(r["video"], r["prompt"]) for r in gathered.values()} == unique


def test_a_mistyped_model_leaves_no_trace_and_the_table_names_runs_and_counts(checkpoint, in_domain, tmp_path):
    import shutil

    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="not a DeScore checkpoint"):
        evaluate(tmp_path / "no-such-model", "in-domain", in_domain, out, think=False)
    assert not out.exists(), "nothing written, so the corrected command is not refused"
    final = tmp_path / "cold_start_run" / "final"
    shutil.copytree(checkpoint, final)
    evaluate(final, "in-domain", in_domain, out, think=False)
    table = (out / "table.md").read_text()
    assert "| cold_start_run |" in table, "a trainer's final/ is named after its run"
    assert "Pairs: in-domain 10 (" in table and "- : not run" in table
    assert (out / "table.png").read_bytes()[:4] == b"\x89PNG"
