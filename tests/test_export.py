"""`descore export vllm`: the exported folder, read with plain transformers (no vLLM), gives the DeScore
reward as the logit of `<reward>` at the last position of `[prompt ; cot ; <reward>]`."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from descore_reward.cli import main
from descore_reward.engines.export import EXPORT_NAME, export_for_vllm, read_export
from descore_reward.errors import CheckpointError, DeScoreInputError
from descore_reward.modeling import DeScoreConfig, DeScoreModel, fill_temporal_patch, processor_arguments
from descore_reward.tiny import build_tiny_backbone

from .conftest import TINY_SAMPLING

PROMPT = "a red square moves right"
COTS = ["The square is red and moves to the right.", None, "Subject: a square.\n<answer>{}</answer>"]


def exported_rewards(folder, model: DeScoreModel, videos, cots) -> torch.Tensor:
    """The `<reward>` logits of the exported folder, on sequences built with its own processor."""
    backbone = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    reward_id = processor.tokenizer.convert_tokens_to_ids(model.config.reward_token)
    rewards = []
    for video, cot in zip(videos, cots, strict=True):
        video = fill_temporal_patch(model.load_videos([video])[0], processor)
        text = model.chat_prefix(PROMPT)
        prompt = processor(
            text=[text],
            videos=[video.frames],
            video_metadata=[video.metadata],
            return_tensors="pt",
            **processor_arguments(model.config.sampling),
        )
        cot_ids = processor.tokenizer(cot or "", add_special_tokens=False, return_tensors="pt").input_ids
        ids = torch.cat([prompt["input_ids"], cot_ids, torch.tensor([[reward_id]])], dim=1)
        extra = ids.shape[1] - prompt["input_ids"].shape[1]
        inputs = {
            **prompt,
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": torch.cat([prompt["mm_token_type_ids"], torch.zeros(1, extra, dtype=torch.long)], 1),
        }
        with torch.no_grad():
            rewards.append(backbone(**inputs).logits[0, -1, reward_id].item())
    return torch.tensor(rewards)


@pytest.mark.parametrize("variant", ["plain", "lora", "tied"])
def test_exported_reward_logit_is_the_descore_reward(variant, tmp_path, synthetic_videos):
    backbone_dir = tmp_path / "backbone"
    build_tiny_backbone(backbone_dir, seed=1, text={"tie_word_embeddings": variant == "tied"})
    model = DeScoreModel.from_backbone(backbone_dir, DeScoreConfig(sampling=TINY_SAMPLING), seed=3)
    with torch.no_grad():  # a trained-looking scoring state: not the initial mean embedding
        model.reward_embedding.normal_(generator=torch.Generator().manual_seed(0))
    if variant == "lora":
        model.add_lora(rank=4)
        with torch.no_grad():
            for name, parameter in model.backbone.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.5, generator=torch.Generator().manual_seed(1))
    model.save_pretrained(tmp_path / "ckpt")
    model = DeScoreModel.from_pretrained(tmp_path / "ckpt")
    videos = [synthetic_videos[0], torch.rand(6, 48, 64, 3), synthetic_videos[2]]
    with torch.no_grad():
        expected = model([*videos], [PROMPT] * 3, COTS)

    out = export_for_vllm(tmp_path / "ckpt", tmp_path / "export")
    torch.testing.assert_close(exported_rewards(out, model, videos, COTS), expected, rtol=0, atol=1e-5)
    scoring = read_export(out)
    assert scoring.reward_token_id == model.reward_token_id
    assert scoring.suppressed_token_ids == model.unwritable_token_ids()
    assert scoring.eos_token_ids == model.eos_token_ids()
    assert (scoring.max_new_tokens, scoring.repetition_penalty) == (4096, 1.05)
    assert scoring.config.instruction_template == model.rubric.instruction_template
    assert scoring.config.sampling == TINY_SAMPLING
    assert not (out / "adapter").exists() and not (out / "descore_head.safetensors").exists()
    exported_config = json.loads((out / "config.json").read_text())
    assert exported_config["tie_word_embeddings"] is False


def test_export_refuses_a_head_with_a_bias_and_names_it(tmp_path, make_model):
    make_model(head_bias=True).save_pretrained(tmp_path / "ckpt")
    with pytest.raises(DeScoreInputError, match=r"ckpt: its head has a bias"):
        export_for_vllm(tmp_path / "ckpt", tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_read_export_names_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(CheckpointError, match=rf"{tmp_path}: not a descore export \(no {EXPORT_NAME}\)"):
        read_export(tmp_path)
    (tmp_path / EXPORT_NAME).write_text('{"format": 99}')
    with pytest.raises(CheckpointError, match="not a descore export of format 1"):
        read_export(tmp_path)


def test_export_command(tmp_path, make_model, capsys):
    make_model().save_pretrained(tmp_path / "ckpt")
    assert main(["export", "vllm", "--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / EXPORT_NAME).is_file()
    assert "descore serve --model" in capsys.readouterr().out
    assert main(["export", "vllm", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "not a DeScore checkpoint" in capsys.readouterr().err
