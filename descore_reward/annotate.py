"""`descore annotate`: CoTs from a teacher VLM, kept only when they agree with the human label (paper 3.1).

For each pair, a teacher writes a CoT for each video in a rubric's format (`rubrics.py`: `descore`, the
default, or `likert5`). Its answers imply a preference: A when A's quality exceeds B's by more than
`tie_margin`, B in the mirror case, a tie otherwise; quality is the overall score (`descore`) or the
sum of the five sub-scores (`likert5`). A pair is kept only when that
agrees with the human label; kept rows go to `--out`, rejected ones (with the reason) to
`OUT.rejected.jsonl`, and rows whose teacher calls kept failing to `OUT.failed.jsonl`. A rerun skips
kept and rejected rows and retries failed ones.

Teachers: a local Hugging Face VLM through this project's own video pipeline (`LocalTeacher`), or an
OpenAI-compatible chat-completions endpoint (`EndpointTeacher`: a vLLM server, a hosted model), with
frames sent as images and the key read from an environment variable, never written anywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .atomic import append_jsonl, read_jsonl_log
from .data import PreferencePair, pair_record, read_jsonl
from .errors import DeScoreInputError, OutputFolderError
from .rubrics import get_rubric
from .video import VideoSampling, load_video


class TeacherError(RuntimeError):
    """A teacher call that failed for good (after retries) or answered something unusable."""


class TeacherUnreachable(DeScoreInputError):
    """The endpoint never answered the first request of a run: no point in asking for every pair."""


class LocalTeacher:
    """A Hugging Face VLM (Qwen3-VL-8B in the paper) generating CoTs through DeScore's video path, greedy;
    `generation_kwargs` go to `generate` (a `logits_processor`, say)."""

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype=None,
        max_new_tokens: int = 1024,
        sampling: VideoSampling | None = None,
        rubric: str = "descore",
        generation_kwargs: dict | None = None,
    ):
        import torch

        from .modeling import DeScoreConfig, DeScoreModel

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        config = DeScoreConfig(sampling=sampling or VideoSampling(), rubric=rubric)
        self.model = DeScoreModel.from_backbone(model, config, dtype=dtype, device=device)
        self.max_new_tokens = max_new_tokens
        self.generation_kwargs = generation_kwargs or {}

    def __call__(self, videos: list, prompts: list[str]) -> list[str]:
        results = self.model.score(
            videos,
            prompts,
            think=True,
            batch_size=len(videos),
            max_new_tokens=self.max_new_tokens,
            generation_kwargs=self.generation_kwargs,
        )
        return [result.cot for result in results]


class EndpointTeacher:
    """An OpenAI-compatible `POST {base_url}/chat/completions` client with retries and rate limiting.

    frames: images sent per video (JPEG data URLs, evenly spaced). Retries 429, 5xx and network errors
    with exponential back-off (honouring `Retry-After`), at most `max_retries` times.
    requests_per_minute: spacing between requests (None: no limit).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        frames: int = 8,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        requests_per_minute: float | None = None,
        rubric: str = "descore",
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.rubric = get_rubric(rubric)
        self.model, self.api_key_env, self.frames = model, api_key_env, frames
        self.max_tokens, self.temperature, self.timeout = max_tokens, temperature, timeout
        self.max_retries, self.backoff = max_retries, backoff
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._last_request = 0.0
        self.answered = False  # until the endpoint first answers, a connection failure stops the run

    def request_body(self, video, prompt: str) -> dict:
        """The chat-completions request for one video: its frames as images where the instruction's
        `<video>` marker is (before the instruction without one)."""
        from PIL import Image

        sampled = load_video(video, VideoSampling().spread(self.frames))
        before, after = self.rubric.instruction_around_video(prompt)
        parts = [{"type": "text", "text": before}] if before else []
        for frame in sampled.frames.permute(0, 2, 3, 1).numpy():
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
            url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
            parts.append({"type": "image_url", "image_url": {"url": url}})
        parts.append({"type": "text", "text": after})
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": parts}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode()
        for attempt in range(self.max_retries + 1):
            wait = self._last_request + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request = time.monotonic()
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    self.answered = True
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as error:
                retryable = error.code == 429 or error.code >= 500
                if not retryable or attempt == self.max_retries:
                    raise TeacherError(f"HTTP {error.code} from {self.url}") from None
                delay = float(error.headers.get("Retry-After") or self.backoff * 2**attempt)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                if attempt == self.max_retries and not self.answered:
                    raise TeacherUnreachable(
                        f"--endpoint {self.url}: unreachable ({error}); nothing was annotated"
                    ) from None
                if attempt == self.max_retries:
                    raise TeacherError(f"cannot reach {self.url}: {error}") from None
                delay = self.backoff * 2**attempt
            except json.JSONDecodeError:
                raise TeacherError(f"{self.url} answered something that is not JSON") from None
            time.sleep(delay)
        raise AssertionError("unreachable")

    def __call__(self, videos: list, prompts: list[str]) -> list[str]:
        texts = []
        for video, prompt in zip(videos, prompts, strict=True):
            answer = self._post(self.request_body(video, prompt))
            try:
                texts.append(answer["choices"][0]["message"]["content"])
            except (KeyError, IndexError, TypeError):
                raise TeacherError(f"{self.url} answered without choices[0].message.content") from None
            if not isinstance(texts[-1], str):
                raise TeacherError(f"{self.url} answered a non-text message content")
        return texts


def implied_label(cot_a: str, cot_b: str, tie_margin: float = 0.0, rubric: str = "descore") -> tuple[str | None, str]:
    """The preference two CoTs imply ("A", "B" or "tie"), or None with the reason."""
    judge = get_rubric(rubric)
    qualities = []
    for name, cot in (("cot_a", cot_a), ("cot_b", cot_b)):
        answer = judge.parse(cot)
        if judge.name == "descore":
            if answer.overall is None:
                return None, f"format: {name} has no answer block with an overall_score in [1, 5]"
            qualities.append(answer.overall)
        else:
            if answer.scores is None:
                return None, f"format: {name} has no JSON object with all five sub-scores as integers 1..5"
            qualities.append(sum(answer.scores.values()))
    difference = qualities[0] - qualities[1]
    label = "tie" if abs(difference) <= tie_margin else ("A" if difference > 0 else "B")
    what = "overall scores" if judge.name == "descore" else "sub-score totals"
    return label, f"{what} {qualities[0]:g} vs {qualities[1]:g} imply {label}"


def consistency(
    cot_a: str, cot_b: str, human: str, tie_margin: float = 0.0, rubric: str = "descore"
) -> tuple[bool, str]:
    """Keep the pair's CoTs only when their implied preference is the human label."""
    label, reason = implied_label(cot_a, cot_b, tie_margin, rubric)
    if label is None:
        return False, reason
    return label == human, reason + ("" if label == human else f", the human label is {human}")


@dataclass
class AnnotationSummary:
    kept: int
    rejected: int
    failed: int
    skipped: int

    @property
    def kept_ratio(self) -> float:
        done = self.kept + self.rejected
        return self.kept / done if done else 0.0


def _done_ids(*paths: Path) -> set[str]:
    return {row["id"] for path in paths for row in read_jsonl_log(path) if "id" in row}


def annotate(
    pairs_path: str | Path,
    teacher,
    out: str | Path,
    stage: int = 1,
    tie_margin: float = 0.0,
    batch_size: int = 4,
    rubric: str = "descore",
) -> AnnotationSummary:
    """Annotate every pair of `pairs_path` with `teacher(videos, prompts) -> CoTs` written in `rubric`'s
    format (the teacher must be asked with the same rubric); see the module doc."""
    judge = get_rubric(rubric)
    if stage not in (1, 2):
        raise DeScoreInputError(f"stage must be 1 or 2, got {stage}")
    pairs = read_jsonl(pairs_path)  # every bad row reported before any teacher call
    out = Path(out)
    if out.is_dir():
        raise OutputFolderError(f"--out {out}: is a folder; expected the JSONL file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # before any teacher call: its rows go beside it
    except OSError as error:
        raise OutputFolderError(f"--out {out}: cannot create {out.parent} ({error.strerror or error})") from None
    rejected_path, failed_path = out.with_suffix(".rejected.jsonl"), out.with_suffix(".failed.jsonl")
    finished = _done_ids(out, rejected_path)
    todo = [pair for pair in pairs if pair.id not in finished]
    summary = AnnotationSummary(kept=0, rejected=0, failed=0, skipped=len(pairs) - len(todo))
    folder = Path(pairs_path).parent
    for start in tqdm(range(0, len(todo), batch_size), desc="annotating"):
        batch: list[PreferencePair] = todo[start : start + batch_size]
        videos = [v for pair in batch for v in (pair.video_a, pair.video_b)]
        prompts = [pair.prompt for pair in batch for _ in range(2)]
        try:
            cots = teacher(videos, prompts)
        except TeacherError as error:
            for pair in batch:
                append_jsonl(failed_path, [{"id": pair.id, "reason": str(error)}])
                summary.failed += 1
            continue
        for index, pair in enumerate(batch):
            cot_a, cot_b = cots[2 * index], cots[2 * index + 1]
            keep, reason = consistency(cot_a, cot_b, pair.label, tie_margin, rubric)
            scores = (judge.parse(cot_a).scores, judge.parse(cot_b).scores) if stage == 2 and keep else (None, None)
            annotated = dataclasses.replace(pair, cot_a=cot_a, cot_b=cot_b, scores_a=scores[0], scores_b=scores[1])
            row = pair_record(annotated, folder)
            if keep:
                append_jsonl(out, [row])
                summary.kept += 1
            else:
                append_jsonl(rejected_path, [{**row, "reason": reason}])
                summary.rejected += 1
    return summary
