"""`DeScoreClient`: scores from a DeScore server (`descore serve`) as `DeScoreModel.score` returns them.

The client samples each video the library's way (`load_video` with the served model's sampling), so the
server sees the frames a local call would, and sends them losslessly by default:

    POST /v1/score  {"think": bool, "decoding": {...}, "videos": [{"name", "prompt", "frames", "encoding",
                     "shape", "metadata"}]}     frames: base64 of the (T, 3, H, W) uint8 bytes ("raw") or of
                                                one JPEG per frame ("jpeg", about 10x smaller, lossy)
    200 {"results": [ScoreResult as a dict, ...]}
    422 {"error": "videos[3]: ..."}             the request named a bad video or argument
    503 {"error": "..."}                        busy (retried, with backoff) or its engine is gone
    GET /v1/info -> {"scoring": descore_export.json}      GET /health -> {"status": "ok"}

Requests of `batch_size` videos go out `concurrency` at a time (the server's engine batches across them).
Only the standard library speaks HTTP here.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import DeScoreInputError, ServerError
from ..modeling import ScoreResult, load_videos, score_inputs
from ..video import Video, VideoInputError, VideoSource, check_frame_size, metadata_fields
from .export import ExportedScoring

TRANSPORTS = ("raw", "jpeg")
RETRIED_STATUSES = (429, 502, 503, 504)
JPEG_QUALITY = 95


def encode_video(video: Video, prompt: str, transport: str = "raw") -> dict:
    """One video of a `/v1/score` request: its sampled frames, their metadata, its prompt and name."""
    frames = video.frames.contiguous().numpy()
    if transport == "raw":
        data = [base64.b64encode(frames.tobytes()).decode("ascii")]
    else:
        from PIL import Image

        data = []
        for frame in frames.transpose(0, 2, 3, 1):
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
            data.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {
        "name": video.name,
        "prompt": prompt,
        "encoding": transport,
        "shape": list(frames.shape),
        "frames": data,
        "metadata": metadata_fields(video.metadata),
    }


def decode_video(payload: dict, index: int) -> tuple[Video, str]:
    """The `Video` and prompt of one request entry (server side); `VideoInputError` naming it if malformed."""
    from transformers.video_utils import VideoMetadata

    name = payload.get("name") if isinstance(payload, dict) else None
    name = name if isinstance(name, str) else f"videos[{index}]"
    try:
        shape, encoding, data = tuple(payload["shape"]), payload["encoding"], payload["frames"]
        if len(shape) != 4 or shape[1] != 3 or min(shape) < 1 or encoding not in TRANSPORTS:
            raise ValueError(f"shape {list(shape)} and encoding {encoding!r}: expected (T, 3, H, W), raw or jpeg")
        if encoding == "raw":
            frames = np.frombuffer(base64.b64decode(data[0], validate=True), dtype=np.uint8).reshape(shape)
        else:
            from PIL import Image

            frames = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(f))).convert("RGB")) for f in data])
            frames = frames.transpose(0, 3, 1, 2)
            if frames.shape != shape:
                raise ValueError(f"JPEG frames of shape {list(frames.shape)}, the request says {list(shape)}")
        metadata = VideoMetadata(**payload["metadata"])
        if len(metadata.frames_indices) != shape[0]:
            raise ValueError(f"{len(metadata.frames_indices)} frame indices for {shape[0]} frames")
        prompt = payload["prompt"]
    except (KeyError, TypeError, ValueError, IndexError, OSError) as error:
        raise VideoInputError(f"{name}: malformed video in the request ({error})") from None
    check_frame_size(shape[2], shape[3], name)
    return Video(torch.from_numpy(frames.copy()), metadata, name), prompt


class DeScoreClient:
    """A DeScore server as a scorer: `score` takes and returns what `DeScoreModel.score` does.

    url: the server's base URL (`http://host:8000`).
    timeout: seconds one HTTP request may take (a think-mode request waits for its CoTs).
    retries: tries after the first for an unreachable, busy or failing server, with backoff; then
        `ServerError`. A rejected video (`DeScoreInputError`) is never retried.
    concurrency: requests in flight at once.
    transport: "raw" (lossless) or "jpeg" (smaller, lossy: docs/serving.md measures its cost in reward).
    """

    def __init__(
        self,
        url: str,
        timeout: float = 600.0,
        retries: int = 3,
        concurrency: int = 8,
        transport: str = "raw",
        backoff: float = 1.0,
    ):
        if transport not in TRANSPORTS:
            raise DeScoreInputError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        if retries < 0 or concurrency < 1 or timeout <= 0:
            raise DeScoreInputError(
                f"retries >= 0, concurrency >= 1 and timeout > 0 expected, got {retries}, {concurrency}, {timeout}"
            )
        if not url.startswith(("http://", "https://")):
            raise DeScoreInputError(f"server {url!r}: expected an http:// or https:// URL")
        self.url, self.timeout, self.retries, self.backoff = url.rstrip("/"), timeout, retries, backoff
        self.concurrency, self.transport = concurrency, transport
        info = self._request("GET", "/v1/info")
        self.scoring = ExportedScoring.from_dict(info.get("scoring"), source=f"{self.url}/v1/info")
        self.config = self.scoring.config

    def score(
        self,
        videos: Sequence[VideoSource | Video],
        prompts: str | Sequence[str],
        think: bool = True,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        repetition_penalty: float | None = None,
        progress: bool | None = None,
    ) -> list[ScoreResult]:
        """Score videos on the server; every video is loaded and checked here before the first request."""
        from tqdm.auto import tqdm

        videos, prompts = score_inputs(videos, prompts, batch_size)
        loaded = load_videos(videos, self.config.sampling)
        decoding = dict(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            repetition_penalty=repetition_penalty,
        )
        starts = range(0, len(loaded), batch_size)

        def send(start: int) -> list[ScoreResult]:
            body = {
                "think": think,
                "decoding": {**decoding, "seed": None if seed is None else seed + start},
                "videos": [
                    encode_video(video, prompt, self.transport)
                    for video, prompt in zip(loaded[start : start + batch_size], prompts[start : start + batch_size])
                ],
            }
            return [ScoreResult(**row) for row in self._request("POST", "/v1/score", body)["results"]]

        results = []
        hidden = None if progress is None else not progress
        with (
            ThreadPoolExecutor(self.concurrency) as pool,
            tqdm(total=len(loaded), desc="scoring", disable=hidden) as bar,
        ):
            for batch in pool.map(send, starts):
                results += batch
                bar.update(len(batch))
        return results

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON request with bounded retries; the server's own error message when it refuses."""
        data = None if body is None else json.dumps(body).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                message = _error_message(error)
                if error.code in RETRIED_STATUSES:
                    last = f"answered {error.code}: {message}"
                    continue
                if 400 <= error.code < 500:
                    raise DeScoreInputError(f"{self.url}: {message}") from None
                raise ServerError(f"{self.url}{path}: answered {error.code}: {message}") from None
            except TimeoutError:
                last = f"no answer within {self.timeout:g} s (timeout)"
            except (urllib.error.URLError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                last = f"unreachable ({reason}); is the server running (`descore serve --model EXPORT`)?"
            except json.JSONDecodeError:
                raise ServerError(
                    f"{self.url}{path}: answered something other than JSON; is it a DeScore server?"
                ) from None
        tries = f"{self.retries + 1} tries" if self.retries else "1 try"
        raise ServerError(f"{self.url}{path}: {last} (after {tries})")


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason if isinstance(error.reason, str) else "no message"
