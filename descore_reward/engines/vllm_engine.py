"""DeScore on a vLLM engine: `DeScoreModel.score`'s results with paged attention and continuous batching.

Each video is two requests to one engine over an exported folder (`export.py`):

    1. the CoT:    [prompt]                 -> greedy decoding, the rubric's budget and repetition
                                               penalty, `<reward>` and the vision placeholders suppressed
    2. the reward: [prompt ; cot ; <reward>] -> one token, only `<reward>` allowed; with the engine's
                                               `logprobs_mode="raw_logits"` its reported value is the raw
                                               logit of the LM head's `<reward>` row, `head(h)`

The second request finds the first one's prefix in the prefix cache, so it costs one short prefill.
Rows finish independently (no row waits for the longest CoT of its batch, as in HF `generate`). Videos
are sampled and sized as on the HF path (`load_video`, the same processor arguments), so the prompt
token ids and pixels are the same. vLLM is imported when an engine is built, never by this module.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from transformers import AutoProcessor

from ..errors import DeScoreInputError
from ..hub import checkpoint_folder
from ..modeling import (
    CONFIG_NAME,
    ScoreResult,
    chat_prefix,
    check_text,
    check_videos,
    fill_temporal_patch,
    load_videos,
    processor_arguments,
    score_inputs,
)
from ..rubrics import get_rubric
from ..video import Video, VideoSource, metadata_fields
from .export import EXPORT_NAME, export_for_vllm, read_export

# Engine arguments that exact scoring needs: the reward is a raw logit; vLLM 0.32's on-device video
# normalisation uses the image processor's statistics, not the video processor's; decoding settings come
# from the export, never from the backbone's generation_config.json.
ENGINE_ARGUMENTS = {"logprobs_mode": "raw_logits", "mm_device_do_normalize": False, "generation_config": "vllm"}
ENGINE_DEFAULTS = {"enable_prefix_caching": True, "limit_mm_per_prompt": {"image": 0, "video": 1}}
SUPPRESSED_BIAS = -100.0  # the lowest logit bias vLLM accepts: a suppressed token is never the argmax


def vllm_missing(setting: str, docs: str) -> DeScoreInputError:
    """The error for `setting: vllm` where vLLM is not installed (`docs`: the page that says more)."""
    return DeScoreInputError(
        f"{setting} 'vllm': vLLM is not installed in this environment (`pip install vllm` on a CUDA machine; "
        f"{docs}); {setting} 'hf' needs nothing more"
    )


def check_engine_arguments(engine_arguments: dict, fixed: dict, setting: str, docs: str) -> None:
    """Before any work: vLLM importable, and no argument in `engine_arguments` against the `fixed` ones."""
    if importlib.util.find_spec("vllm") is None:
        raise vllm_missing(setting, docs)
    clashing = {name: engine_arguments[name] for name in fixed if name in engine_arguments}
    if any(value != fixed[name] for name, value in clashing.items()):
        raise DeScoreInputError(f"{setting} arguments {clashing}: DeScore needs {fixed}")


class ScoringRequests:
    """The requests that score one video on an exported folder, and the result they give; shared by the
    offline engine (`VLLMEngine`) and the server (`server.py`)."""

    def __init__(self, folder: str | os.PathLike):
        self.scoring = read_export(folder)
        self.config = self.scoring.config
        self.rubric = get_rubric(self.config.rubric, self.config.instruction_template)
        self.processor = AutoProcessor.from_pretrained(folder)
        self.reward_token_id = self.scoring.reward_token_id

    def prompt(self, video: Video, prompt: str) -> dict:
        """A vLLM token prompt of `[chat(video, prompt)]`: the chat text's ids with one video placeholder
        (vLLM expands it with the frames' timestamps, as the HF processor does), the sampled frames
        `(T, H, W, 3)` uint8 with their metadata, and the HF path's processor arguments."""
        check_text(prompt, f"prompt of {video.name}", self.config.reward_token)
        video = fill_temporal_patch(video, self.processor)
        return {
            "prompt_token_ids": self.processor.tokenizer(chat_prefix(self.processor, self.rubric, prompt)).input_ids,
            "multi_modal_data": {"video": (video.frames.permute(0, 2, 3, 1).numpy(), metadata_fields(video.metadata))},
            "mm_processor_kwargs": processor_arguments(self.config.sampling),
        }

    def cot_parameters(
        self,
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        repetition_penalty: float | None = None,
        logprobs: int | None = None,
    ):
        """Sampling parameters of a CoT: the rubric's decoding (greedy, its budget and repetition penalty)
        unless overridden; `do_sample` samples at `temperature` / `top_p` from `seed` (no top-k);
        `logprobs` 0: report each sampled token's log-prob."""
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=max_new_tokens or self.scoring.max_new_tokens,
            temperature=temperature if do_sample else 0.0,
            top_p=top_p if do_sample else 1.0,
            seed=seed if do_sample else None,
            repetition_penalty=repetition_penalty or self.scoring.repetition_penalty or 1.0,
            stop_token_ids=self.scoring.eos_token_ids,
            logit_bias={token: SUPPRESSED_BIAS for token in self.scoring.suppressed_token_ids},
            skip_special_tokens=True,
            logprobs=logprobs,
        )

    def reward_parameters(self):
        """Sampling parameters of the reward request: one token, `<reward>` only, its raw logit reported."""
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=1, temperature=0.0, allowed_token_ids=[self.reward_token_id], logprobs=0, detokenize=False
        )

    def reward_prompt(self, prompt: dict, cot_ids: Sequence[int]) -> dict:
        """`[prompt ; cot ; <reward>]`: the CoT prompt with the CoT's tokens and `<reward>` appended."""
        return {**prompt, "prompt_token_ids": [*prompt["prompt_token_ids"], *cot_ids, self.reward_token_id]}

    def cot_ids(self, generated: Sequence[int]) -> list[int]:
        """The CoT of a generation: its tokens before the first end-of-sequence token."""
        eos = set(self.scoring.eos_token_ids)
        ids = list(generated)
        return next((ids[:i] for i, token in enumerate(ids) if token in eos), ids)

    def reward(self, output) -> float:
        """The reward of a finished reward request (a vLLM `RequestOutput`)."""
        return float(output.outputs[0].logprobs[0][self.reward_token_id].logprob)

    def result(self, video: Video, cot_ids: Sequence[int] | None, reward: float) -> ScoreResult:
        """A `ScoreResult` as `DeScoreModel.score` returns it; `cot_ids` None in fast mode."""
        if cot_ids is None:
            return ScoreResult(reward, video=video.name)
        cot = self.processor.tokenizer.decode(list(cot_ids), skip_special_tokens=True)
        answer = self.rubric.parse(cot)
        return ScoreResult(reward, cot, answer.reasoning, answer.scores, answer.overall, video.name)


class VLLMEngine:
    """DeScore scoring on a vLLM `LLM`: `score` takes and returns what `DeScoreModel.score` does.

    path: an exported folder (`descore export vllm`), or a DeScore checkpoint, exported first into a
        temporary folder that lives as long as the engine.
    engine_arguments: more `vllm.LLM` arguments (`tensor_parallel_size`, `gpu_memory_utilization`,
        `max_model_len`, `dtype`, ...); `ENGINE_ARGUMENTS` are fixed, `ENGINE_DEFAULTS` may be changed.
    """

    def __init__(self, path: str | os.PathLike, **engine_arguments):
        check_engine_arguments(engine_arguments, ENGINE_ARGUMENTS, "engine", "docs/serving.md")
        from vllm import LLM

        self._export_dir = None
        folder = checkpoint_folder(path)  # a folder, or a Hub id of an export or a checkpoint
        if not (folder / EXPORT_NAME).is_file() and (folder / CONFIG_NAME).is_file():
            self._export_dir = tempfile.TemporaryDirectory(prefix="descore-vllm-")
            folder = export_for_vllm(folder, Path(self._export_dir.name) / "export")
        self.requests = ScoringRequests(folder)
        self.config = self.requests.config
        self.rubric = self.requests.rubric
        self.llm = LLM(model=str(folder), **{**ENGINE_DEFAULTS, **engine_arguments, **ENGINE_ARGUMENTS})

    def close(self) -> None:
        """Stop the engine's processes and remove a temporary export; the engine cannot score after this."""
        self.llm.llm_engine.engine_core.shutdown()
        if self._export_dir is not None:
            self._export_dir.cleanup()

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def score(
        self,
        videos: Sequence[VideoSource | Video],
        prompts: str | Sequence[str],
        think: bool = True,
        batch_size: int = 64,
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        repetition_penalty: float | None = None,
        progress: bool | None = None,
    ) -> list[ScoreResult]:
        """Score videos as `DeScoreModel.score` does. `batch_size` videos are decoded and handed to the
        engine at a time (it schedules their requests itself: a larger one keeps more of them in flight,
        at the memory of their frames). Sampled CoTs (`do_sample`) draw from `seed + i` for video i, not
        from the HF path's generator. `progress`: a bar of videos scored (None: on a terminal)."""
        from tqdm.auto import tqdm

        videos, prompts = score_inputs(videos, prompts, batch_size)
        videos = check_videos(videos, self.config.sampling)  # every file checked before any engine work
        results = []
        with tqdm(
            total=len(videos), desc="scoring", unit="video", disable=None if progress is None else not progress
        ) as bar:
            for start in range(0, len(videos), batch_size):
                batch = load_videos(videos[start : start + batch_size], self.config.sampling)
                requests = [self.requests.prompt(v, p) for v, p in zip(batch, prompts[start : start + batch_size])]
                cots = [None] * len(batch)
                if think:
                    parameters = [
                        self.requests.cot_parameters(
                            max_new_tokens,
                            do_sample,
                            temperature,
                            top_p,
                            None if seed is None else seed + i,
                            repetition_penalty,
                        )
                        for i in range(start, start + len(batch))
                    ]
                    generations = self.llm.generate(requests, parameters, use_tqdm=False)
                    cots = [self.requests.cot_ids(generation.outputs[0].token_ids) for generation in generations]
                rewards = self.llm.generate(
                    [self.requests.reward_prompt(request, cot or []) for request, cot in zip(requests, cots)],
                    self.requests.reward_parameters(),
                    use_tqdm=False,
                )
                results += [
                    self.requests.result(video, cot, self.requests.reward(reward))
                    for video, cot, reward in zip(batch, cots, rewards, strict=True)
                ]
                bar.update(len(batch))
        return results
