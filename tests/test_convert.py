"""`descore convert official`: a tiny Qwen3-VL written in the authors' layout converts into a DeScore
checkpoint whose reward equals an independent computation on the authors' own weights."""

import pickle

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText

from descore_reward.convert import convert_official, read_official_head
from descore_reward.errors import CheckpointError
from descore_reward.modeling import DeScoreModel
from descore_reward.tiny import build_tiny_backbone

from .conftest import TINY_SAMPLING


def authors_layout(folder, nested: bool, with_adapter: bool):
    """A Qwen3-VL folder whose tokenizer holds <Reward> with a trained embedding row, and rm_head.pth."""
    model, processor = build_tiny_backbone(seed=3)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": ["<Reward>"]})
    model.resize_token_embeddings(len(processor.tokenizer))
    token = processor.tokenizer.convert_tokens_to_ids("<Reward>")
    with torch.no_grad():
        model.get_input_embeddings().weight[token] = torch.linspace(-2.0, 3.0, model.config.text_config.hidden_size)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if with_adapter:
        torch.manual_seed(1)
        adapted = get_peft_model(model, LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)"))
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.data.normal_(0, 0.5)  # a trained, non-zero adapter
        adapted.save_pretrained(folder / "lora_adapter")
    weight = torch.randn(1, model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(5))
    key = "base_model.model.rm_head.weight" if nested else "rm_head.weight"
    state = {"model": {key: weight}} if nested else {key: weight}
    torch.save(state, folder / "rm_head.pth")
    return weight, token


@pytest.mark.parametrize("nested, with_adapter", [(False, False), (True, True)])
def test_converted_reward_equals_the_authors_computation(tmp_path, synthetic_videos, nested, with_adapter):
    official = tmp_path / "official"
    weight, token = authors_layout(official, nested, with_adapter)
    out = convert_official(official, official / "rm_head.pth", tmp_path / "converted", sampling=TINY_SAMPLING)
    converted = DeScoreModel.from_pretrained(out)
    assert converted.config.reward_token == "<Reward>" and converted.config.rubric == "descore"
    prompt = "a red square moves right"
    reward = converted.score([synthetic_videos[0]], prompt, think=False)[0].reward

    # Independently: the authors' backbone (adapter merged) and their head, on the same tokens.
    backbone = AutoModelForImageTextToText.from_pretrained(official).eval()
    if with_adapter:
        from peft import PeftModel

        backbone = PeftModel.from_pretrained(backbone, official / "lora_adapter").merge_and_unload()
    inputs = converted.prepare_inputs([synthetic_videos[0]], [prompt])
    inputs = converted.scored_sequences(inputs, *converted.tokenize_cots([None]))
    assert int((inputs["input_ids"] == token).sum()) == 1
    with torch.no_grad():
        hidden = backbone.model(**inputs).last_hidden_state[0]
    expected = float(hidden[inputs["input_ids"][0] == token][0] @ weight[0])
    assert reward == pytest.approx(expected, abs=1e-5)


class NotATensor:
    pass


def test_unsafe_or_foreign_head_files_are_refused(tmp_path):
    pickled = tmp_path / "rm_head.pth"
    torch.save({"rm_head.weight": torch.zeros(1, 4), "extra": NotATensor()}, pickled)
    with pytest.raises(CheckpointError, match="loads safely"):
        read_official_head(pickled)
    (tmp_path / "plain.pth").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="rm_head.pth|plain.pth"):
        read_official_head(tmp_path / "plain.pth")
    torch.save({"head.weight": torch.zeros(1, 4)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="holds none of"):
        read_official_head(tmp_path / "other.pth")
    torch.save({"rm_head.weight": torch.zeros(2, 4)}, tmp_path / "wide.pth")
    with pytest.raises(CheckpointError, match=r"expected \[1, hidden\]"):
        read_official_head(tmp_path / "wide.pth")


def test_convert_command_line(tmp_path):
    import subprocess
    import sys

    official = tmp_path / "official"
    authors_layout(official, nested=False, with_adapter=False)
    instruction = tmp_path / "instruction.txt"
    instruction.write_text("The authors' words about {prompt}.")
    command = [sys.executable, "-m", "descore_reward.cli", "convert", "official", "--model", str(official)]
    result = subprocess.run(
        [
            *command,
            "--rm-head",
            str(official / "rm_head.pth"),
            "--out",
            str(tmp_path / "out"),
            "--instruction-file",
            str(instruction),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert DeScoreModel.from_pretrained(tmp_path / "out").rubric.instruction("x") == "The authors' words about x."
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
    bad = subprocess.run(
        [*command, "--rm-head", str(tmp_path / "bad.pth"), "--out", str(tmp_path / "out2")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "bad.pth" in bad.stderr and "Traceback" not in bad.stderr
