"""Stage 2's rollouts: sampled (or given) CoTs for both videos of each pair, their scored sequences
`[prompt ; cot ; <reward>]` (`DeScoreModel.scored_sequences`, the video encoded once per step), rule
rewards and advantages, and the forwards the update runs over them.

Rows are the A videos' rollouts, then the B videos', each video's `group_size` rollouts in a row.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig

from ..data import PreferencePair
from ..errors import DeScoreInputError
from ..losses import group_advantages
from ..modeling import DeScoreModel, select_video_features
from ..rubrics import RolloutRewardConfig, Rubric
from ..video import load_video

if TYPE_CHECKING:
    from .rl import RLConfig


@dataclass
class Rollouts:
    """`N = 2 * pairs * group_size` sampled CoTs; rows are A videos then B videos, each video's group in a row."""

    sequence: dict  # backbone inputs for [prompt ; cot ; <reward>], video features included
    prompt_length: int
    response_mask: torch.Tensor  # (N, L): the CoT tokens and the end-of-sequence token, if any
    texts: list[str]
    rewards: torch.Tensor  # (N,) rule-based
    terms: dict[str, torch.Tensor]  # each rule term (N,)
    advantages: torch.Tensor  # (N,)
    labels: torch.Tensor  # (pairs * group_size,) human label of each A/B rollout pair
    temperature: float = 1.0  # the sampling temperature: log-probs are of the distribution sampled from
    sampler_logprobs: torch.Tensor | None = None  # (N, L) as the vLLM engine that sampled them reports them


def pair_micro_batches(rollouts: Rollouts, group_size: int, pairs_per_batch: int | None) -> list[torch.Tensor]:
    """Row indices of the rollouts of `pairs_per_batch` pairs at a time (their A rows, then their B rows),
    so that each micro-batch holds both sides of its BT pairs; a single batch of all rows for None."""
    half = len(rollouts.texts) // 2
    size = half if pairs_per_batch is None else pairs_per_batch * group_size
    return [torch.cat([rows, rows + half]) for rows in torch.arange(half).split(size)]


def select_rollouts(rollouts: Rollouts, rows: torch.Tensor) -> Rollouts:
    """The rollouts at `rows`, A rows then as many B rows (a micro-batch from `pair_micro_batches`)."""
    return Rollouts(
        sequence=select_sequences(rollouts.sequence, rows),
        prompt_length=rollouts.prompt_length,
        response_mask=rollouts.response_mask[rows],
        texts=[rollouts.texts[i] for i in rows.tolist()],
        rewards=rollouts.rewards[rows],
        terms={name: term[rows] for name, term in rollouts.terms.items()},
        advantages=rollouts.advantages[rows],
        labels=rollouts.labels[rows[: len(rows) // 2]],
        temperature=rollouts.temperature,
        sampler_logprobs=None if rollouts.sampler_logprobs is None else rollouts.sampler_logprobs[rows],
    )


@contextlib.contextmanager
def plain_generation_config(model: DeScoreModel):
    """Generation with only the settings passed to it: the backbone's `generation_config.json` (a
    repetition penalty, top-k, ...) is set aside, its special tokens kept, so rollouts are sampled from
    the distribution whose log-probs the update computes."""
    backbone = model.unwrapped_backbone
    saved = backbone.generation_config
    tokens = ("bos_token_id", "eos_token_id", "pad_token_id")
    backbone.generation_config = GenerationConfig(**{name: getattr(saved, name) for name in tokens})
    try:
        yield
    finally:
        backbone.generation_config = saved


@torch.no_grad()
def sample_rollouts(
    model: DeScoreModel, pairs: list[PreferencePair], config: RLConfig, greedy: bool = False
) -> Rollouts:
    """Encode each video once, sample `group_size` CoTs per video, and score them with the rules.
    `greedy`: decode greedily instead (parity checks; the log-probs stay those of the sampled distribution)."""
    inputs, features = encode_pairs(model, pairs)
    rows = [video for video in range(2 * len(pairs)) for _ in range(config.group_size)]
    prompts = {key: inputs[key][rows] for key in ("input_ids", "attention_mask", "mm_token_type_ids", "video_grid_thw")}
    # top_k 0: no top-k (transformers' own default is 50), so the log-probs are of the full softmax
    sampling = dict(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0)
    with plain_generation_config(model):
        generated, cot_length, _ = model.generate_cots(
            prompts,
            mm_encoder_outputs={"video": select_video_features(features, rows)},
            **({"do_sample": False} if greedy else sampling),
            max_new_tokens=config.max_new_tokens,
        )
    return assemble_rollouts(model, pairs, inputs, features, generated, cot_length, config)


def pair_videos(model: DeScoreModel, pairs: list[PreferencePair]) -> list:
    """The A videos, then the B videos, of `pairs`, decoded and sampled as the model samples them."""
    return [load_video(p.video_a, model.config.sampling) for p in pairs] + [
        load_video(p.video_b, model.config.sampling) for p in pairs
    ]


def encode_pairs(model: DeScoreModel, pairs: list[PreferencePair], videos: list | None = None) -> tuple:
    """The prompt inputs (`prepare_inputs`) of the A videos, then the B videos, of `pairs`, and the vision
    tower's features of each video, computed once so that generation and every later pass reuse them.
    `videos`: the `pair_videos` already decoded, if they were."""
    videos = videos if videos is not None else pair_videos(model, pairs)
    inputs = model.prepare_inputs(videos, [p.prompt for p in pairs] * 2)
    features = model.language_backbone.get_video_features(
        inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True
    )
    return inputs, features


@torch.no_grad()
def rollouts_from_texts(
    model: DeScoreModel, pairs: list[PreferencePair], texts: list[str], config: RLConfig
) -> Rollouts:
    """Rollouts of given CoTs instead of sampled ones (`group_size` texts per video, A videos then B
    videos), each ended by the end-of-sequence token as a sampled one is: for supervised warm-ups
    (their log-probs are an SFT loss), tests and experiments with known CoTs."""
    group = config.group_size
    if len(texts) != 2 * len(pairs) * group:
        expected = f"{2 * len(pairs) * group} texts (2 videos x {len(pairs)} pairs x {group})"
        raise DeScoreInputError(f"expected {expected}, got {len(texts)}")
    cot_ids, cot_length = model.tokenize_cots(texts)
    generated = torch.cat([cot_ids, torch.full_like(cot_ids[:, :1], model.processor.tokenizer.pad_token_id)], 1)
    generated[torch.arange(len(texts)), cot_length] = model.eos_token_ids()[0]
    inputs, features = encode_pairs(model, pairs)
    return assemble_rollouts(model, pairs, inputs, features, generated, cot_length, config)


def assemble_rollouts(
    model: DeScoreModel,
    pairs: list[PreferencePair],
    inputs,
    features,
    generated: torch.Tensor,
    cot_length: torch.Tensor,
    config: RLConfig,
) -> Rollouts:
    """Rollouts of CoT tokens `generated` `(N, L)` (row i: rollout `i % group_size` of video
    `i // group_size`), `cot_length[i]` of them the CoT: sequences, rule rewards, advantages, labels."""
    group = config.group_size
    rows = [video for video in range(2 * len(pairs)) for _ in range(group)]
    tokenizer = model.processor.tokenizer
    texts = [tokenizer.decode(row[:n], skip_special_tokens=True) for row, n in zip(generated, cot_length.tolist())]
    truths = [p.scores_a for p in pairs] + [p.scores_b for p in pairs]
    rewards, terms = rule_rewards(model.rubric, texts, cot_length.tolist(), truths, group, config.rewards(model.rubric))
    positions = torch.arange(generated.shape[1], device=generated.device)
    return Rollouts(
        sequence=model.scored_sequences(inputs, generated, cot_length, rows, video_features=features),
        prompt_length=inputs["input_ids"].shape[1],
        response_mask=positions <= cot_length[:, None],  # the end-of-sequence token is part of the response
        texts=texts,
        rewards=rewards,
        terms=terms,
        advantages=group_advantages(rewards, group, epsilon=config.advantage_epsilon).to(generated.device),
        labels=torch.tensor([p.human for p in pairs]).repeat_interleave(group).to(generated.device),
        temperature=config.temperature,
    )


def rule_rewards(
    rubric: Rubric,
    texts: list[str],
    token_counts: list[int],
    truths: list[dict],
    group_size: int,
    config: RolloutRewardConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Rule rewards `(N,)` and each term `(N,)` of rollouts in video-major order: row i is rollout
    `i % group_size` of video `i // group_size`, judged against that video's truth and nothing else."""
    scored = [
        rubric.rollout_reward(text, tokens, truths[row // group_size], config)
        for row, (text, tokens) in enumerate(zip(texts, token_counts, strict=True))
    ]
    rewards = torch.tensor([total for total, _ in scored])
    return rewards, {
        name: torch.tensor([terms[name] for _, terms in scored]) for name in ("format", "quality", "length")
    }


def logprobs_and_rewards(model: DeScoreModel, rollouts: Rollouts) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over the rollouts' `[prompt ; cot ; <reward>]`: the log-probs `(N, L)` of the tokens after
    the prompt (the distribution at the sampling temperature, over the tokens a CoT may hold, as
    `generate_cots` samples it) and the rewards `(N,)` at `<reward>`."""
    start, length = rollouts.prompt_length, rollouts.response_mask.shape[1]
    hidden = model.language_backbone(**rollouts.sequence).last_hidden_state  # (N, P + L + 1, hidden)
    logits = model.unwrapped_backbone.lm_head(hidden[:, start - 1 : start + length - 1]).float()
    logits = logits.index_fill(-1, torch.tensor(model.unwritable_token_ids(), device=logits.device), -math.inf)
    targets = rollouts.sequence["input_ids"][:, start : start + length]
    logprobs = torch.log_softmax(logits / rollouts.temperature, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    return logprobs, model.head(hidden[:, -1].float())


def masked_rewards(model: DeScoreModel, rollouts: Rollouts, group_size: int) -> torch.Tensor:
    """Rewards `(V,)` of `[video ; prompt ; <reward>]` (the CoT masked) for each video of `rollouts`, A
    videos then B videos: the prompt of each group's first row, no CoT. One prompt-only forward."""
    first = select_sequences(rollouts.sequence, torch.arange(0, len(rollouts.texts), group_size))
    prompts = {
        key: first[key][:, : rollouts.prompt_length] for key in ("input_ids", "attention_mask", "mm_token_type_ids")
    }
    prompts["video_grid_thw"] = first["video_grid_thw"]
    no_cot = prompts["input_ids"][:, :0]
    features = first["mm_encoder_outputs"]["video"]
    sequence = model.scored_sequences(
        prompts, no_cot, no_cot.new_zeros(len(no_cot)), rows=range(len(no_cot)), video_features=features
    )
    return model.rewards_of(sequence)


def select_sequences(sequence: dict, rows: torch.Tensor) -> dict:
    """The rows `rows` of a `scored_sequences` batch built with video features."""
    selected = {key: value[rows] for key, value in sequence.items() if torch.is_tensor(value)}
    video = select_video_features(sequence["mm_encoder_outputs"]["video"], rows.tolist())
    return {**selected, "mm_encoder_outputs": {"video": video}}
