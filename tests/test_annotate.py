"""`descore annotate`: the consistency filter, a tiny local teacher end to end, and the endpoint client
against a real HTTP server on 127.0.0.1 (request shape, retries, malformed answers, resume)."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from descore_reward.annotate import EndpointTeacher, LocalTeacher, annotate, consistency
from descore_reward.rubrics import likert5_cot
from descore_reward.synthetic import make_dataset

from .conftest import TINY_SAMPLING

HIGH = {"object": 5, "dynamics": 5, "environment": 4, "style": 4, "camera_movement": 4}
LOW = {"object": 2, "dynamics": 3, "environment": 4, "style": 4, "camera_movement": 4}
NEAR = {**HIGH, "camera_movement": 3}


def test_consistency_filter():
    good, bad = likert5_cot("A is better.", HIGH), likert5_cot("B is worse.", LOW)
    assert consistency(good, bad, "A", rubric="likert5") == (True, "sub-score totals 22 vs 17 imply A")
    keep, reason = consistency(good, bad, "B", rubric="likert5")
    assert not keep and "the human label is B" in reason
    assert consistency(good, likert5_cot("close", NEAR), "tie", tie_margin=1, rubric="likert5")[0]
    assert not consistency(good, likert5_cot("close", NEAR), "tie", tie_margin=0, rubric="likert5")[0]
    missing = "Reasoning. " + json.dumps({k: v for k, v in HIGH.items() if k != "style"})
    keep, reason = consistency(good, missing, "A", rubric="likert5")
    assert not keep and reason.startswith("format: cot_b")


def test_consistency_filter_with_the_descore_rubric():
    from descore_reward.rubrics import DeScoreRubric

    rubric = DeScoreRubric()
    scores = {"subject": 2, "dynamics": 2, "camera": "N/A", "environment": 2, "style": 2}
    better, worse = rubric.format_answer("Right.", scores, 5.0), rubric.format_answer("Off.", scores, 3.5)
    assert consistency(better, worse, "A") == (True, "overall scores 5 vs 3.5 imply A")
    assert consistency(better, rubric.format_answer("Close.", scores, 4.8), "tie", tie_margin=0.3)[0]
    keep, reason = consistency(better, "no answer block", "A")
    assert not keep and reason.startswith("format: cot_b has no answer block")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("annotate"), 4, seed=5, tie_rate=0.0)


class ScriptedWriter:
    """A logits processor that makes greedy decoding write `texts[row]` then end: the real model,
    processor and decoding loop, with CoTs whose verdicts the test chooses."""

    def __init__(self, tokenizer, texts: list[str]):
        end = [tokenizer.eos_token_id]
        self.targets = [tokenizer(text, add_special_tokens=False).input_ids + end for text in texts]
        self.start = None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        step = input_ids.shape[1] - self.start
        forced = scores.new_full(scores.shape, float("-inf"))
        for row, target in enumerate(self.targets):
            token = target[min(step, len(target) - 1)]
            forced[row, token] = scores[row, token]
        return forced


def test_local_teacher_keeps_the_pairs_its_cots_agree_with(tiny_backbone_dir, pairs, tmp_path):
    """A local teacher (the tiny Qwen3-VL, steered to write the descore answer format) that rates
    every A video 5.0 and every B video 2.5: exactly the pairs labelled A are kept, with parsed sub-scores."""
    from transformers import LogitsProcessorList

    from descore_reward.data import read_jsonl
    from descore_reward.rubrics import DeScoreRubric

    rubric = DeScoreRubric()
    scores = {"subject": 2, "dynamics": 2, "camera": 2, "environment": 2, "style": "N/A"}
    good = rubric.format_answer("As asked.", scores, 5.0)
    poor = rubric.format_answer("Off.", {**scores, "subject": 0}, 2.5)
    labels = [pair.label for pair in read_jsonl(pairs)]
    teacher = LocalTeacher(str(tiny_backbone_dir), device="cpu", max_new_tokens=160, sampling=TINY_SAMPLING)
    writer = ScriptedWriter(teacher.model.processor.tokenizer, [good, poor] * len(labels))
    teacher.generation_kwargs = {"logits_processor": LogitsProcessorList([writer])}
    summary = annotate(pairs, teacher, tmp_path / "out.jsonl", stage=2, batch_size=len(labels))
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert "A" in labels and "B" in labels, "the fixture holds both labels"
    assert summary.kept == labels.count("A") and summary.rejected == labels.count("B")
    assert all(row["cot_a"] == good and row["scores_b"]["subject"] == 0 for row in kept)


class ScriptedChatServer(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions from `server.script`: a list of (status, body) to play in order."""

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), request))
        status, body = self.server.script.pop(0) if self.server.script else self.server.default
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body.encode() if isinstance(body, str) else json.dumps(body).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedChatServer)
    httpd.requests, httpd.script = [], []
    httpd.default = (200, {"choices": [{"message": {"content": likert5_cot("Looks right.", HIGH)}}]})
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def answer(scores):
    return 200, {"choices": [{"message": {"content": likert5_cot("Judged.", scores)}}]}


def test_endpoint_request_shape_and_retries(server, pairs, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "secret-key")
    teacher = EndpointTeacher(
        f"http://127.0.0.1:{server.server_port}/v1",
        "gemini-2.5-pro",
        api_key_env="TEST_TEACHER_KEY",
        frames=3,
        backoff=0.01,
    )
    server.script = [(429, {"error": "slow down"}), (503, {"error": "busy"}), answer(HIGH)]
    (cot,) = teacher([next((pairs.parent / "videos").glob("*.mp4"))], ["a red square"])
    assert "Looks right" not in cot and '"object": 5' in cot
    assert len(server.requests) == 3
    path, headers, body = server.requests[-1]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer secret-key"
    assert body["model"] == "gemini-2.5-pro" and body["messages"][0]["role"] == "user"
    parts = body["messages"][0]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 3 and parts[-1]["type"] == "text" and "a red square" in parts[-1]["text"]
    assert base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1])[:2] == b"\xff\xd8"  # JPEG
    summary = annotate(pairs, teacher, tmp_path / "out.jsonl", stage=2)
    assert summary.rejected == 4  # the server judges every video alike: ties, against A/B labels
    written = list(tmp_path.iterdir())
    assert written and all("secret-key" not in path.read_text() for path in written)


def test_malformed_answers_fail_and_resume_completes(server, pairs, tmp_path):
    url = f"http://127.0.0.1:{server.server_port}/v1"
    teacher = EndpointTeacher(url, "m", frames=2, backoff=0.01, max_retries=1, rubric="likert5")
    data = [json.loads(line) for line in pairs.read_text().splitlines()]
    script = []
    for row in data[:2]:  # the first two pairs get answers that agree with their labels
        better, worse = (HIGH, LOW) if row["label"] == "A" else (LOW, HIGH)
        script += [answer(better), answer(worse)]
    script += [(200, "not json at all"), (200, {"no": "choices"})]  # one bad answer fails each remaining pair
    server.script = script
    out = tmp_path / "out.jsonl"
    first = annotate(pairs, teacher, out, stage=2, batch_size=1, rubric="likert5")
    assert (first.kept, first.failed) == (2, 2)
    failed = [json.loads(line) for line in (tmp_path / "out.failed.jsonl").read_text().splitlines()]
    assert [row["id"] for row in failed] == [row["id"] for row in data[2:]]
    assert "not JSON" in failed[0]["reason"]
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(set(row["scores_a"]) == set(HIGH) for row in kept)
    for row in data[2:]:
        better, worse = (HIGH, LOW) if row["label"] == "A" else (LOW, HIGH)
        server.script += [answer(better), answer(worse)]
    with out.open("a") as file:  # a kill in the middle of writing a third row
        file.write('{"id": "' + data[2]["id"] + '", "prompt": "tor')
    second = annotate(pairs, teacher, out, stage=2, batch_size=1, rubric="likert5")
    assert (second.kept, second.skipped, second.failed) == (2, 2, 0), "the torn row is annotated again"
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [row["id"] for row in data]


def test_annotate_command(server, pairs, tmp_path):
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "descore_reward.cli",
        "annotate",
        "--pairs",
        str(pairs),
        "--teacher",
        "m",
        "--stage",
        "2",
        "--out",
        str(tmp_path / "out.jsonl"),
        "--endpoint",
        f"http://127.0.0.1:{server.server_port}/v1",
        "--frames",
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "kept 0, rejected 4, failed 0" in result.stdout and "kept ratio 0.000" in result.stdout
    bad = subprocess.run(command[:5] + [str(tmp_path / "missing.jsonl")] + command[6:], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr and "Traceback" not in bad.stderr


def test_an_unreachable_endpoint_stops_at_the_first_pair_into_a_folder_that_exists(pairs, tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "new" / "folder" / "out.jsonl"
    command = [sys.executable, "-m", "descore_reward.cli", "annotate", "--pairs", str(pairs), "--teacher", "m"]
    command += ["--stage", "1", "--out", str(out), "--endpoint", f"http://127.0.0.1:{port}/v1", "--max-retries", "1"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "unreachable" in result.stderr and "nothing was annotated" in result.stderr
    assert out.parent.is_dir() and not out.exists()
    folder = subprocess.run([str(tmp_path) if a == str(out) else a for a in command], capture_output=True, text=True)
    assert folder.returncode == 2 and "is a folder" in folder.stderr
