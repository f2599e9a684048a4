"""The `descore` command line, run as a user runs it: a subprocess on real files."""

import json
import subprocess
import sys

import pytest


def descore(*args, cwd=None):
    command = [sys.executable, "-m", "descore_reward.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model"
    tiny_model.save_pretrained(path, include_backbone=True)
    return path


def test_score_prints_one_line_per_video(checkpoint, synthetic_videos):
    result = descore(
        "score", *synthetic_videos, "--prompt", "a red square", "--model", checkpoint, "--max-new-tokens", "4"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(synthetic_videos)
    for line, video in zip(lines, synthetic_videos):
        reward, path, _ = line.split("\t")
        float(reward)
        assert path == str(video)


def test_score_json_without_thinking(checkpoint, synthetic_videos):
    result = descore("score", synthetic_videos[0], "--prompt", "x", "--model", checkpoint, "--no-think", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["cot"] is None and isinstance(row["reward"], float) and row["video"] == str(synthetic_videos[0])


def test_bad_input_is_one_line_naming_the_file(checkpoint, synthetic_videos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("this is not a video")
    result = descore("score", synthetic_videos[0], broken, "--prompt", "x", "--model", checkpoint)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("descore score: error:")]
    assert len(errors) == 1 and str(broken) in errors[0]


def test_missing_model_is_named(synthetic_videos, tmp_path):
    result = descore("score", synthetic_videos[0], "--prompt", "x", "--model", tmp_path / "nowhere")
    assert result.returncode == 2 and "nowhere" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_runs_offline_and_refuses_foreign_folders(demo_run, tmp_path):
    out, result = demo_run
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("reward" in row and "cot" in row for row in rows)
    assert (out / "cold_start" / "final" / "descore_config.json").exists()
    assert "held-out pair accuracy after" in result.stdout
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    refused = descore("demo", "--out", tmp_path / "mine")
    assert refused.returncode == 2 and "mine" in refused.stderr
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"


def test_eval_prints_the_table(checkpoint, tmp_path):
    from descore_reward.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", 4, seed=2)
    result = descore(
        "eval",
        "--benchmark",
        "in-domain",
        "--data",
        data,
        "--model",
        checkpoint,
        "--out",
        tmp_path / "out",
        "--no-think",
        "--name",
        "tiny",
    )
    assert result.returncode == 0, result.stderr
    assert "| tiny |" in result.stdout and (tmp_path / "out" / "table.png").exists()
    bad = descore(
        "eval",
        "--benchmark",
        "in-domain",
        "--data",
        tmp_path / "nope.jsonl",
        "--model",
        checkpoint,
        "--out",
        tmp_path / "out2",
    )
    assert bad.returncode == 2 and "nope.jsonl" in bad.stderr and "Traceback" not in bad.stderr


def test_train_cold_start_from_a_yaml_config(tiny_backbone_dir, tmp_path):
    import yaml

    from descore_reward.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", 8, seed=4)
    config = tmp_path / "cold_start.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_backbone_dir),
                "train_data": str(data),
                "output_dir": str(tmp_path / "run"),
                "batch_size": 4,
                "micro_batch_size": 2,
                "lora_rank": 4,
                "report_to": None,
            }
        )
    )
    result = descore("train", "cold-start", "--config", config, "max_steps=2", "learning_rate=1e-3")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "final" / "adapter" / "adapter_config.json").exists()
    typo = descore("train", "cold-start", "--config", config, "learning_rat=1e-3")
    assert typo.returncode == 2 and "learning_rat" in typo.stderr and "Traceback" not in typo.stderr
