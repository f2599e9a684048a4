"""The DeScore server's client without vLLM: its wire format, its errors and its bounded retries, against
an HTTP stub on 127.0.0.1 (the real server's parity tests are in test_vllm.py); and `descore serve`."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from descore_reward.cli import main
from descore_reward.engines.client import DeScoreClient, decode_video, encode_video
from descore_reward.engines.export import export_for_vllm
from descore_reward.errors import CheckpointError, DeScoreInputError, ServerError
from descore_reward.integrations.reward import DeScoreReward
from descore_reward.video import VideoInputError, load_video

from .conftest import TINY_SAMPLING


def test_frames_cross_the_wire_losslessly_or_as_jpeg(real_videos):
    video = load_video(real_videos[0], TINY_SAMPLING)
    raw, prompt = decode_video(json.loads(json.dumps(encode_video(video, "a cat"))), 0)
    assert torch.equal(raw.frames, video.frames) and raw.metadata == video.metadata
    assert (raw.name, prompt) == (str(real_videos[0]), "a cat")
    jpeg, _ = decode_video(encode_video(video, "a cat", transport="jpeg"), 0)
    assert jpeg.frames.shape == video.frames.shape
    assert (jpeg.frames.float() - video.frames.float()).abs().mean() < 4  # lossy, at quality 95


def test_a_malformed_video_is_named(real_videos):
    entry = {**encode_video(load_video(real_videos[0], TINY_SAMPLING), "a cat"), "name": "videos[2]"}
    with pytest.raises(VideoInputError, match=r"videos\[2\]: malformed video in the request"):
        decode_video({**entry, "shape": [1, 2, 3]}, 2)
    with pytest.raises(VideoInputError, match=r"videos\[5\]: malformed video in the request"):
        decode_video({"prompt": "x"}, 5)


class Stub(BaseHTTPRequestHandler):
    """Answers every request with the status and body the test sets, after `delay` seconds; counts them."""

    status, body, requests, delay = 200, {}, 0, 0.0

    def _answer(self):
        type(self).requests += 1
        time.sleep(self.delay)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = json.dumps(self.body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def stub(tmp_path, make_model):
    """An HTTP stub whose /v1/info is a real export's sidecar."""
    make_model().save_pretrained(tmp_path / "ckpt")
    sidecar = json.loads((export_for_vllm(tmp_path / "ckpt", tmp_path / "export") / "descore_export.json").read_text())
    Stub.status, Stub.body, Stub.requests, Stub.delay = 200, {"scoring": sidecar}, 0, 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_client_reads_the_served_models_config_and_samples_with_it(stub):
    client = DeScoreClient(stub)
    assert client.config.sampling == TINY_SAMPLING
    reward_fn = DeScoreReward(server=stub)
    assert reward_fn.sampling == TINY_SAMPLING


def test_busy_server_is_retried_a_bounded_number_of_times(stub, real_videos):
    client = DeScoreClient(stub, retries=2, backoff=0.01)
    Stub.status, Stub.body, Stub.requests = 503, {"error": "busy: 9 videos in flight"}, 0
    with pytest.raises(ServerError, match=r"/v1/score: answered 503: busy: 9 videos in flight \(after 3 tries\)"):
        client.score(real_videos[:1], "a cat", think=False)
    assert Stub.requests == 3


def test_rejected_video_is_the_servers_message_and_is_not_retried(stub, real_videos):
    client = DeScoreClient(stub, retries=3, backoff=0.01)
    Stub.status, Stub.body, Stub.requests = 422, {"error": "prompt of videos[0]: contains the reserved token"}, 0
    with pytest.raises(DeScoreInputError, match=r"prompt of videos\[0\]: contains the reserved token"):
        client.score(real_videos[:1], "a cat", think=False)
    assert Stub.requests == 1


def test_unreachable_or_foreign_servers_are_named(stub):
    with pytest.raises(ServerError, match=r"http://127.0.0.1:9/v1/info: unreachable .*descore serve.*after 2 tries"):
        DeScoreClient("http://127.0.0.1:9", retries=1, backoff=0.01)
    Stub.body = {"models": []}
    with pytest.raises(CheckpointError, match="/v1/info: not a descore export"):
        DeScoreClient(stub)
    with pytest.raises(DeScoreInputError, match="expected an http"):
        DeScoreClient("127.0.0.1:8000")
    with pytest.raises(DeScoreInputError, match="a model or a server, not both"):
        DeScoreReward("some/checkpoint", server=stub)


def test_a_server_that_does_not_answer_in_time_is_named(stub, real_videos):
    client = DeScoreClient(stub, timeout=0.2, retries=1, backoff=0.01)
    Stub.delay = 1.0
    with pytest.raises(ServerError, match=r"/v1/score: no answer within 0.2 s \(timeout\) \(after 2 tries\)"):
        client.score(real_videos[:1], "a cat", think=False)


def test_flow_grpo_reads_the_server_and_engine_from_the_environment(stub, monkeypatch):
    from descore_reward.integrations.flow_grpo import settings_from_environment

    monkeypatch.setenv("DESCORE_SERVER", stub)
    monkeypatch.setenv("DESCORE_ENGINE", "vllm")
    settings = settings_from_environment("cpu")
    assert (settings["server"], settings["engine"]) == (stub, "vllm")
    monkeypatch.delenv("DESCORE_ENGINE")
    assert isinstance(DeScoreReward(**settings_from_environment("cpu")).model, DeScoreClient)


def test_score_command_names_an_unreachable_server(real_videos, capsys):
    code = main(["score", str(real_videos[0]), "--prompt", "a cat", "--server", "http://127.0.0.1:9"])
    assert code == 2
    assert "http://127.0.0.1:9/v1/info: unreachable" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_engine_and_serve_say_what_to_do(tmp_path, make_model, capsys):
    from descore_reward.engines.vllm_engine import VLLMEngine

    make_model().save_pretrained(tmp_path / "ckpt")
    with pytest.raises(DeScoreInputError, match="vLLM is not installed in this environment"):
        VLLMEngine(tmp_path / "ckpt")
    export = export_for_vllm(tmp_path / "ckpt", tmp_path / "export")
    assert main(["serve", "--model", str(export), "--tensor-parallel-size", "2"]) == 2
    assert "vLLM is not installed" in capsys.readouterr().err
    assert (
        main(["serve", "--model", str(export), "--port", "9001", "--print-command", "--data-parallel-size", "8"]) == 0
    )
    printed = capsys.readouterr().out
    assert "-m descore_reward.engines.server --model" in printed and "--port 9001 --data-parallel-size 8" in printed
    assert main(["serve", "--model", str(tmp_path / "ckpt")]) == 2
    assert "not a descore export" in capsys.readouterr().err


def test_the_servers_decoding_settings_are_checked_before_the_engine():
    from descore_reward.engines.server import decoding_of

    assert decoding_of({"max_new_tokens": 8, "seed": None})["max_new_tokens"] == 8
    for bad, name in (({"max_new_tokens": 0}, "max_new_tokens=0"), ({"top_p": 1.5}, "top_p=1.5")):
        with pytest.raises(DeScoreInputError, match=f"decoding: {name} is not a valid value"):
            decoding_of(bad)
    with pytest.raises(DeScoreInputError, match=r"unknown setting\(s\) \['budget'\]"):
        decoding_of({"budget": 4096})
