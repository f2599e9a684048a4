"""The `descore` command line, run as a user runs it: a subprocess on real files."""

import json
import subprocess
import sys

import pytest


def descore(*args, cwd=None):
    command = [sys.executable, "-m", "descore_reward.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


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
    assert "held-out pairs, with CoT" in result.stderr and "held-out pairs, CoT masked" in result.stderr  # progress
    import shlex

    follow_up = shlex.split(result.stdout.strip().splitlines()[-1])
    assert follow_up[:2] == ["descore", "score"]
    again = descore(*follow_up[1:], "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["reward"] == pytest.approx(rows[0]["reward"], abs=1e-4), "same numbers as the demo"
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


def one_error_line(result, command: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"descore {command}: error:"), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda d: (d / "descore_config.json").write_text('{"backbone": '), "descore_config.json"),
        (lambda d: (d / "descore_config.json").write_bytes(b"\xff\xfe\x00garbage"), "descore_config.json"),
        (
            lambda d: (d / "descore_config.json").write_text(
                json.dumps({**json.loads((d / "descore_config.json").read_text()), "colour": "red"})
            ),
            "colour",
        ),
        (lambda d: (d / "descore_head.safetensors").write_bytes(b"\x10\x00"), "descore_head.safetensors"),
        (
            lambda d: (d / "descore_head.safetensors").write_bytes((d / "descore_head.safetensors").read_bytes()[:-40]),
            "descore_head.safetensors",
        ),
        (lambda d: (d / "descore_head.safetensors").unlink(), "descore_head.safetensors"),
    ],
    ids=["torn-json", "not-utf8", "unknown-key", "corrupt-head", "truncated-head", "missing-head"],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(checkpoint, synthetic_videos, tmp_path, damage, named):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(checkpoint, broken)
    damage(broken)
    line = one_error_line(descore("score", synthetic_videos[0], "--prompt", "x", "--model", broken), "score")
    assert named in line and str(broken) in line


def test_score_reads_a_manifest_of_videos_and_prompts(checkpoint, synthetic_videos, tmp_path):
    import shutil

    for video in synthetic_videos[:2]:
        shutil.copy(video, tmp_path / video.name)
    manifest = tmp_path / "videos.csv"
    manifest.write_text(f"video,prompt\n{synthetic_videos[0].name},a red square\n{synthetic_videos[1].name},a circle\n")
    result = descore("score", "--manifest", manifest, "--model", checkpoint, "--no-think", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["prompt"] for row in rows] == ["a red square", "a circle"]
    assert [row["video"] for row in rows] == [str(tmp_path / v.name) for v in synthetic_videos[:2]]
    jsonl = tmp_path / "videos.jsonl"
    jsonl.write_text(json.dumps({"video": synthetic_videos[0].name, "prompt": "a red square"}) + "\n{}\n")
    line = one_error_line(descore("score", "--manifest", jsonl, "--model", checkpoint), "score")
    assert f"{jsonl}:2" in line


def test_eval_refuses_an_output_folder_it_did_not_write_before_scoring(checkpoint, tmp_path):
    from descore_reward.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", 2, seed=2)
    args = ["eval", "--benchmark", "in-domain", "--data", data, "--model", checkpoint, "--no-think", "--out"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "table.md").write_text("my own table")
    line = one_error_line(descore(*args, tmp_path / "mine"), "eval")
    assert "table.md" in line and (tmp_path / "mine" / "table.md").read_text() == "my own table"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["table.md"], "nothing scored"
    assert descore(*args, tmp_path / "out").returncode == 0
    (tmp_path / "out" / "metrics.json").write_text("not json")
    (tmp_path / "out" / "scores-rank0.jsonl").unlink()
    line = one_error_line(descore(*args, tmp_path / "out"), "eval")
    assert "metrics.json" in line and not (tmp_path / "out" / "scores-rank0.jsonl").exists(), "refused before scoring"


def test_ctrl_c_says_where_training_stopped_and_the_same_command_resumes(tiny_backbone_dir, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from descore_reward.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", 8, seed=4)
    config = tmp_path / "cold_start.yaml"
    values = dict(model=str(tiny_backbone_dir), train_data=str(data), output_dir=str(tmp_path / "run"))
    values.update(
        batch_size=2, micro_batch_size=1, lora_rank=4, max_steps=400, save_every=1, report_to=None
    )  # never done first
    config.write_text(yaml.safe_dump(values))
    command = [sys.executable, "-m", "descore_reward.cli", "train", "cold-start", "--config", str(config)]

    def as_from_a_terminal():  # a test run started in the background inherits SIGINT ignored: undo that
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    running = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal
    )
    while not list((tmp_path / "run").glob("checkpoint-*/trainer_state.json")) and running.poll() is None:
        time.sleep(0.2)
    for _ in range(3):  # as a user presses again: a Ctrl-C that lands in a destructor (decord's) is swallowed
        running.send_signal(signal.SIGINT)
        try:
            _, stderr = running.communicate(timeout=30)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        running.send_signal(signal.SIGINT)
        _, stderr = running.communicate()
    assert running.returncode == 130, stderr
    assert "Traceback" not in stderr and "descore train: interrupted; the newest checkpoint is" in stderr
    assert "run the same command again to resume" in stderr
    resumed = descore("train", "cold-start", "--config", config, "max_steps=3")
    assert resumed.returncode == 0 and "resuming from step" in resumed.stdout, resumed.stderr


def test_nonsense_values_stop_at_once_with_one_line(tiny_backbone_dir, checkpoint, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {tiny_backbone_dir}\ntrain_data: {empty}\noutput_dir: {tmp_path / 'run'}\n")
    train = descore("train", "cold-start", "--config", config)
    assert "empty.jsonl: holds no pairs" in one_error_line(train, "train")
    negative = descore("train", "cold-start", "--config", config, "learning_rate=-1")
    assert "'learning_rate': expected a number above 0" in one_error_line(negative, "train")
    out = tmp_path / "eval"
    resamples = descore(
        "eval", "--benchmark", "in-domain", "--data", empty, "--model", checkpoint, "--out", out, "--bootstrap", "-5"
    )
    assert resamples.returncode == 2 and "--bootstrap: expected at least 0" in resamples.stderr
    assert not out.exists(), "refused before anything is written"


def test_file_system_refusals_are_one_line_and_a_full_disk_leaves_nothing_half_written(checkpoint, tmp_path):
    import os
    import subprocess
    import sys

    from descore_reward.synthetic import make_dataset

    config = tmp_path / "config.yaml"
    config.write_text("model: m\n")
    if os.geteuid() != 0:  # root reads anything
        config.chmod(0)
        assert "cannot read it" in one_error_line(descore("train", "cold-start", "--config", config), "train")
    data = make_dataset(tmp_path / "data", 4, seed=0)
    out = tmp_path / "eval"
    full_disk = (
        "import errno, sys\n"
        "import descore_reward.evaluation.runner as runner\n"
        "def full(path, rows):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
        "runner.append_jsonl = full\n"
        "from descore_reward import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    arguments = ["eval", "--benchmark", "in-domain", "--data", str(data), "--model", str(checkpoint), "--out", str(out)]
    failed = subprocess.run([sys.executable, "-c", full_disk, *arguments, "--no-think"], capture_output=True, text=True)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    assert failed.stderr.strip().endswith("scores-rank0.jsonl: No space left on device")
    assert not (out / "metrics.json").exists(), "nothing half-written"
    rerun = descore(*arguments, "--no-think")
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "metrics.json").is_file()


def test_a_device_the_machine_lacks_is_one_line(checkpoint, synthetic_videos):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    score = descore("score", synthetic_videos[0], "--prompt", "x", "--model", checkpoint, "--device", "cuda")
    assert "no CUDA GPU" in one_error_line(score, "score")
    look = descore("quick-look", synthetic_videos[0], "--name", "n", "--out", checkpoint.parent, "--device", "cuda:3")
    assert "no CUDA GPU" in one_error_line(look, "quick-look")


def test_a_checkpoint_whose_backbone_moved_is_named_and_found_with_backbone(tiny_model, synthetic_videos, tmp_path):
    tiny_model.save_pretrained(tmp_path / "lora")  # records the backbone by its absolute path
    config_path = tmp_path / "lora" / "descore_config.json"
    values = json.loads(config_path.read_text())
    here = values["backbone"]
    config_path.write_text(json.dumps({**values, "backbone": "/on/another/machine/backbone"}))
    lost = descore("score", synthetic_videos[0], "--prompt", "x", "--model", tmp_path / "lora", "--no-think")
    line = one_error_line(lost, "score")
    assert "/on/another/machine/backbone" in line and "--backbone" in line
    found = descore(
        "score", synthetic_videos[0], "--prompt", "x", "--model", tmp_path / "lora", "--no-think", "--backbone", here
    )
    assert found.returncode == 0, found.stderr
