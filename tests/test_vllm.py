"""The vLLM engine, server and client against the Hugging Face path (`DeScoreModel.score`), on a tiny
Qwen3-VL whose head dimension vLLM's CPU attention accepts. They need vLLM, which has an environment of its
own (`.ci/vllm_env.sh`; `.ci/run` runs this file there); elsewhere they are skipped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

if os.environ.get("DESCORE_REQUIRE_VLLM"):
    import vllm  # noqa: F401
else:
    pytest.importorskip("vllm")

from descore_reward.engines.client import DeScoreClient  # noqa: E402
from descore_reward.engines.export import export_for_vllm  # noqa: E402
from descore_reward.engines.vllm_engine import VLLMEngine  # noqa: E402
from descore_reward.errors import DeScoreInputError, ServerError  # noqa: E402
from descore_reward.integrations.dance_grpo import VideoAlignStyleInferencer  # noqa: E402
from descore_reward.integrations.reward import DeScoreReward  # noqa: E402
from descore_reward.modeling import DeScoreConfig, DeScoreModel  # noqa: E402
from descore_reward.tiny import VLLM_TINY_TEXT, build_tiny_backbone  # noqa: E402

from .conftest import TINY_SAMPLING  # noqa: E402

pytestmark = pytest.mark.slow
# For vLLM's CPU build on a small machine: 1 GiB of KV cache, no cores held back, one process, no compile.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
CPU_ENGINE = {"distributed_executor_backend": "uni", "enforce_eager": True, "dtype": "float32", "max_model_len": 4096}
TOLERANCE = 1e-4
PROMPT = "a red square moves to the right"


def lora_checkpoint(root: Path) -> Path:
    """`root/checkpoint`: a tiny DeScore checkpoint whose LoRA adapter and `<reward>` embedding are random (so
    that merging and writing them matter), on a backbone vLLM's CPU attention accepts."""
    build_tiny_backbone(root / "backbone", seed=0, text=VLLM_TINY_TEXT)
    model = DeScoreModel.from_backbone(root / "backbone", DeScoreConfig(sampling=TINY_SAMPLING), seed=0)
    model.add_lora(rank=4)
    with torch.no_grad():
        for name, parameter in model.backbone.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.2, generator=torch.Generator().manual_seed(1))
        model.reward_embedding.normal_(generator=torch.Generator().manual_seed(2))
    model.save_pretrained(root / "checkpoint")
    return root / "checkpoint"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A tiny DeScore checkpoint (LoRA adapter on, so the export merges it) and its export."""
    root = tmp_path_factory.mktemp("vllm")
    checkpoint = lora_checkpoint(root)
    return {"checkpoint": checkpoint, "export": export_for_vllm(checkpoint, root / "export")}


@pytest.fixture(scope="module")
def hf_model(folders) -> DeScoreModel:
    return DeScoreModel.from_pretrained(folders["checkpoint"])


@pytest.fixture(scope="module")
def engine(folders) -> VLLMEngine:
    with VLLMEngine(folders["export"], **CPU_ENGINE) as engine:
        yield engine


def in_memory_videos() -> list:
    """A tensor, an array and PIL frames: what a diffusion pipeline hands a reward."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    tensor = torch.rand(12, 3, 48, 64, generator=generator)
    array = (torch.rand(9, 40, 56, 3, generator=generator) * 255).to(torch.uint8).numpy()
    frames = [Image.fromarray(frame) for frame in array]
    return [tensor, array, frames]


def assert_same_results(vllm_results, hf_results) -> None:
    for ours, reference in zip(vllm_results, hf_results, strict=True):
        assert ours.reward == pytest.approx(reference.reward, abs=TOLERANCE)
        assert (ours.cot, ours.scores, ours.overall, ours.video) == (
            reference.cot,
            reference.scores,
            reference.overall,
            reference.video,
        )


def test_prompt_tokens_and_greedy_cot_equal_the_hf_path(engine, hf_model, real_videos):
    for source in (real_videos[0], in_memory_videos()[0]):
        video = hf_model.load_videos([source])[0]
        inputs = hf_model.prepare_inputs([video], [PROMPT])
        generated, cot_length, _ = hf_model.generate_cots(
            inputs, max_new_tokens=96, repetition_penalty=1.05, do_sample=False
        )
        [output] = engine.llm.generate(
            [engine.requests.prompt(video, PROMPT)], engine.requests.cot_parameters(max_new_tokens=96), use_tqdm=False
        )
        assert list(output.prompt_token_ids) == inputs["input_ids"][0].tolist()
        written = int(cot_length[0])
        assert written >= 64, "the tiny model should write at least 64 tokens before its end-of-sequence token"
        assert list(output.outputs[0].token_ids)[:written] == generated[0, :written].tolist()


@pytest.mark.parametrize("think", [True, False], ids=["think", "fast"])
def test_scores_equal_the_hf_path(engine, hf_model, real_videos, think):
    videos = [real_videos[0], real_videos[1], *in_memory_videos()]
    prompts = [PROMPT, "a cat", "a dog runs", PROMPT, "waves"]
    kwargs = dict(think=think, max_new_tokens=48)
    assert_same_results(
        engine.score(videos, prompts, batch_size=2, **kwargs), hf_model.score(videos, prompts, **kwargs)
    )


def test_a_checkpoint_is_exported_on_the_way(folders, hf_model, real_videos):
    """`VLLMEngine(checkpoint)` exports into a temporary folder first: the same rewards."""
    engine = VLLMEngine(folders["checkpoint"], **CPU_ENGINE)
    assert_same_results(
        engine.score(real_videos[:2], PROMPT, think=False), hf_model.score(real_videos[:2], PROMPT, think=False)
    )


def test_reward_fn_on_the_engine_drops_into_flow_grpo_and_dance_grpo(engine, hf_model, real_videos):
    batch = torch.rand(3, 10, 3, 48, 64, generator=torch.Generator().manual_seed(3))  # Flow-GRPO's (B, T, C, H, W)
    prompts = ["a cat", "a dog", "a fox"]
    for think in (False, True):
        ours = DeScoreReward(engine, think=think, max_new_tokens=32)
        reference = DeScoreReward(hf_model, think=think, max_new_tokens=32)
        (scores, info), (expected, expected_info) = ours(batch, prompts, None), reference(batch, prompts, None)
        torch.testing.assert_close(torch.from_numpy(scores), torch.from_numpy(expected), rtol=0, atol=TOLERANCE)
        assert info.get("cot") == expected_info.get("cot")
    inferencer = VideoAlignStyleInferencer(engine)  # DanceGRPO's VideoAlign-style call on file paths
    rewards = inferencer.reward([str(path) for path in real_videos[:2]], ["a cat", "a dog"])
    local = VideoAlignStyleInferencer(hf_model).reward([str(path) for path in real_videos[:2]], ["a cat", "a dog"])
    assert [r["Overall"] for r in rewards] == pytest.approx([r["Overall"] for r in local], abs=TOLERANCE)


def test_engine_refuses_settings_that_break_exact_scoring(folders):
    with pytest.raises(DeScoreInputError, match="logprobs_mode"):
        VLLMEngine(folders["export"], logprobs_mode="processed_logprobs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(export: Path, port: int, log: Path) -> subprocess.Popen:
    """`descore serve` on 127.0.0.1; returns once `/health` answers (or fails with the server's log)."""
    arguments = [f"--{name.replace('_', '-')}={value}" for name, value in CPU_ENGINE.items() if value is not True]
    arguments += [f"--{name.replace('_', '-')}" for name, value in CPU_ENGINE.items() if value is True]
    command = [sys.executable, "-m", "descore_reward.cli", "serve", "--model", str(export), "--port", str(port)]
    server = subprocess.Popen([*command, *arguments], stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(1800):  # bounded: a slow machine gets 30 minutes to start it
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return server
        except OSError:
            time.sleep(1)
    server.kill()
    pytest.fail("the server did not answer /health")


def test_server_scores_as_a_local_call_and_fails_clearly(folders, hf_model, real_videos, tmp_path):
    port = free_port()
    server = start_server(folders["export"], port, tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        videos = [real_videos[0], *in_memory_videos()]
        prompts = ["a cat", "a dog", PROMPT, "waves"]
        client = DeScoreClient(url, concurrency=2)
        assert client.config == hf_model.config
        for think in (True, False):
            kwargs = dict(think=think, max_new_tokens=40)
            assert_same_results(
                client.score(videos, prompts, batch_size=2, **kwargs), hf_model.score(videos, prompts, **kwargs)
            )
        reward_fn = DeScoreReward(server=url)  # Flow-GRPO's call on a (B, T, C, H, W) batch
        batch = torch.rand(2, 8, 3, 48, 64, generator=torch.Generator().manual_seed(4))
        scores, _ = reward_fn(batch, ["a cat", "a dog"], None)
        expected, _ = DeScoreReward(hf_model)(batch, ["a cat", "a dog"], None)
        torch.testing.assert_close(torch.from_numpy(scores), torch.from_numpy(expected), rtol=0, atol=TOLERANCE)
        with pytest.raises(DeScoreInputError, match=r"prompt of videos\[0\]: contains the reserved token"):
            client.score([batch[0]], ["a <reward> cat"], think=False)
        with pytest.raises(DeScoreInputError, match="decoding: top_p=2.0 is not a valid value"):
            client.score([batch[0]], ["a cat"], do_sample=True, top_p=2.0)
    finally:
        server.terminate()
        server.wait()
    with pytest.raises(ServerError, match=rf"{url}/v1/score: unreachable .*after 2 tries"):
        client.retries, client.backoff = 1, 0.1  # the client built while the server was up, used after it stopped
        client.score([real_videos[0]], ["a cat"], think=False)


def test_score_and_eval_commands_on_the_engine(folders, hf_model, real_videos, tmp_path, capsys):
    """`descore score --engine vllm` and `descore eval --engine vllm` give the HF path's rewards and metrics
    (in float32: vLLM's own default for a float32 folder on the CPU is bfloat16)."""
    from descore_reward.cli import main
    from descore_reward.evaluation.runner import evaluate

    command = ["score", *map(str, real_videos[:2]), "--prompt", "a cat", "--model", str(folders["export"]), "--json"]
    assert main([*command, "--engine", "vllm", "--dtype", "float32", "--max-new-tokens", "24"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    expected = hf_model.score(real_videos[:2], "a cat", max_new_tokens=24)
    assert [row["reward"] for row in rows] == pytest.approx([r.reward for r in expected], abs=TOLERANCE)
    assert [row["cot"] for row in rows] == [r.cot for r in expected]
    data = real_videos[0].parents[1] / "pairs.csv"  # VideoGen-RewardBench's format, on the shared real videos
    ours = evaluate(
        folders["export"],
        "videogen-rewardbench",
        data,
        tmp_path / "vllm",
        think=False,
        label_column="TA",
        engine="vllm",
        dtype=torch.float32,
    )
    reference = evaluate(
        folders["checkpoint"], "videogen-rewardbench", data, tmp_path / "hf", think=False, label_column="TA"
    )
    assert ours["export"]["videogen-rewardbench"]["accuracy_without_ties"] == pytest.approx(
        reference["checkpoint"]["videogen-rewardbench"]["accuracy_without_ties"]
    )
