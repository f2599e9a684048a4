"""Checkpoints from the Hugging Face Hub, offline: a Hub cache laid out here in its documented format
(`models--{org}--{name}/refs/main`, `snapshots/{commit}/`), read with `HF_HUB_OFFLINE`; model cards; the
upload, up to the Hub call."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch

from descore_reward.errors import CheckpointError
from descore_reward.hub import checkpoint_folder, is_repo_id, model_card
from descore_reward.integrations.reward import DeScoreReward
from descore_reward.modeling import DeScoreConfig, DeScoreModel, read_config
from descore_reward.rubrics import get_rubric

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "descore-org/descore-tiny"


def lay_out_cache(cache: Path, repo: str, folder: Path, commit: str = COMMIT) -> Path:
    """`folder`'s files as the Hub cache holds a model repository at `commit`, `main` pointing at it."""
    organisation, name = repo.split("/")
    root = cache / f"models--{organisation}--{name}"
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


@pytest.fixture
def offline_hub(tmp_path, make_model, monkeypatch):
    """A tiny checkpoint (backbone included) in an offline Hub cache; the cache's path."""
    make_model(seed=3).save_pretrained(tmp_path / "checkpoint", include_backbone=True)
    cache = tmp_path / "hub"
    lay_out_cache(cache, REPO, tmp_path / "checkpoint")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_a_hub_id_loads_from_the_cache_and_scores_as_the_folder(offline_hub, tmp_path, synthetic_videos):
    local = DeScoreModel.from_pretrained(tmp_path / "checkpoint")
    from_hub = DeScoreModel.from_pretrained(REPO)
    pinned = DeScoreModel.from_pretrained(REPO, revision=COMMIT, cache_dir=str(offline_hub))
    expected = [r.reward for r in local.score(synthetic_videos[:2], "a red square", think=False)]
    for model in (from_hub, pinned):
        assert [r.reward for r in model.score(synthetic_videos[:2], "a red square", think=False)] == expected
    scores, _ = DeScoreReward(REPO, device="cpu")(torch.rand(2, 8, 3, 48, 64), ["a cat", "a dog"])
    assert scores.shape == (2,)
    assert read_config(REPO).sampling == local.config.sampling


def test_a_local_folder_keeps_priority_over_a_hub_id(offline_hub, tmp_path, make_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_model(seed=5).save_pretrained(tmp_path / REPO)  # ./descore-org/descore-tiny
    assert not is_repo_id(REPO) and checkpoint_folder(REPO) == Path(REPO)
    assert is_repo_id("descore-org/elsewhere") and not is_repo_id("runs/rl/final")


def test_a_missing_id_offline_is_one_line_naming_it(offline_hub):
    with pytest.raises(CheckpointError) as raised:
        DeScoreModel.from_pretrained("descore-org/not-there")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("descore-org/not-there: not a local folder")
    assert "hf download descore-org/not-there" in message


def test_the_command_line_takes_a_hub_id(offline_hub, synthetic_videos):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(offline_hub)}
    command = [sys.executable, "-m", "descore_reward.cli", "score", str(synthetic_videos[0]), "--prompt", "a cat"]
    done = subprocess.run([*command, "--model", REPO, "--no-think"], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(synthetic_videos[0]) in done.stdout
    missing = subprocess.run([*command, "--model", "descore-org/nope"], env=environment, capture_output=True, text=True)
    assert missing.returncode == 2 and "descore-org/nope: not a local folder" in missing.stderr


def test_model_card_says_how_to_score_and_how_it_was_trained():
    config = DeScoreConfig(
        backbone="Qwen/Qwen3-VL-8B-Instruct",
        training=[{"stage": "cold start", "data": "pairs.jsonl", "pairs": 120, "steps": 40, "evaluation": None}],
    )
    card = model_card(config, get_rubric("descore"))
    front = card.split("---")[1]
    assert "library_name: descore-reward" in front and "base_model: Qwen/Qwen3-VL-8B-Instruct" in front
    assert "license: apache-2.0" in front and "- reward-model" in front
    assert "Rubric: `descore`; CoT budget 4096 tokens" in card and "{prompt}" in card
    assert "| cold start | `pairs.jsonl` | 120 | 40 |" in card and "Held-out evaluation" not in card


def test_push_to_hub_uploads_the_checkpoint_with_its_card(make_model, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, private=None, exist_ok=False):
        calls["created"] = (repo_id, private, exist_ok)

    def upload_folder(self, repo_id, folder_path, commit_message):
        calls["uploaded"] = (repo_id, sorted(p.name for p in Path(folder_path).iterdir()), commit_message)
        calls["card"] = (Path(folder_path) / "README.md").read_text()
        return "commit-info"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert make_model().push_to_hub("me/my-descore", private=True) == "commit-info"
    assert calls["created"] == ("me/my-descore", True, True)
    repo, files, _ = calls["uploaded"]
    assert repo == "me/my-descore" and {"README.md", "descore_config.json", "descore_head.safetensors"} <= set(files)
    assert calls["card"].startswith("---\nlibrary_name: descore-reward")
