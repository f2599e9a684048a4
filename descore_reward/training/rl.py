"""Stage 2, dual-objective RL (paper section 3.2): GRPO on the CoT plus an auxiliary BT loss.

Each step takes `pairs_per_step` human pairs. Both videos of every pair get `group_size` sampled
CoTs. Every rollout earns its rubric's rule-based reward (`rubrics.py`), normalised within its group into
an advantage. One forward pass over `[video ; prompt ; cot ; <reward>]` (`rollouts.py`) then gives both the CoT
tokens' log-probabilities (for GRPO) and the `<reward>` hidden state (for BT: the i-th rollout of
the winner against the i-th of the loser). `L = grpo_coefficient * L_GRPO + bt_coefficient * L_BT`.

The policy trains a LoRA adapter; the reference policy is the stage-1 model, reached without a
second model in memory: with the adapter disabled (stage 1 was a full fine-tune), or with a frozen
copy of the stage-1 adapter switched in (stage 1 trained LoRA). The vision tower is frozen, so each
video is encoded once per step and its features serve generation, the old, reference and policy
passes alike. Under `accelerate launch`, every process samples its own pairs and the gradients are
averaged across processes before each step.

    descore train rl --config rl.yaml [key=value ...]
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

from ..data import DataError, PreferencePair, read_pairs
from ..engines.vllm_engine import vllm_missing
from ..errors import DeScoreInputError
from ..evaluation.metrics import preference_metrics
from ..losses import labelled_bradley_terry_loss
from ..modeling import ADAPTER_DIR, DeScoreModel, read_config
from ..rubrics import RolloutRewardConfig, Rubric, get_rubric, read_instruction_file
from .config import TrainerConfig
from .distributed import epoch_batch, optimizer_step
from .rollouts import (
    Rollouts,
    logprobs_and_rewards,
    masked_rewards,
    pair_micro_batches,
    sample_rollouts,
    select_rollouts,
)
from .run import TrainingRun

ROLLOUT_ENGINES = ("hf", "vllm")
ROLLOUT_EXPORT_DIR = "rollout_engine"  # under the output folder: the stage-1 export the vLLM engine starts from
ROLLOUT_PROMPT_ROOM = 16384  # the engine's context beyond the CoT budget: the instruction and the video


@dataclass(kw_only=True)
class RLConfig(TrainerConfig):
    """Stage-2 settings (beside `TrainerConfig`'s). The paper gives the loss coefficients (1.0, 0.005) and
    65 steps with rollout batch 128; the rest comes from the authors' release where it says
    (`examples/configs/rl_paper.yaml`).
    The rule rewards are the model's rubric's (`rubrics.py`); each field set here replaces its default
    (`answer_parsing`: "exact", the authors' rule and the `descore` default, or "lenient"; see
    `RolloutRewardConfig`).

    model: the stage-1 DeScore checkpoint. train_data: JSONL whose pairs carry `scores_a` / `scores_b`,
        or the authors' stage-2 CSV. instruction_file: the instruction their `problem` texts were written
        from (`{prompt}` and `<video>` where they go), to recover each prompt exactly, over several lines
        too; without it a prompt is found by its quotes or its "prompt:" label.
    pairs_per_step: pairs per step and process; the rollout batch is `2 * pairs_per_step * group_size`
        CoTs. Pairs come in shuffled epochs shared out over processes (no repeats inside an epoch).
    lora: train a LoRA adapter (the reference is the stage-1 model reached by switching adapters), or
        False for a full fine-tune of the language model (the authors'; the reference is a frozen copy
        of the stage-1 model, a second model in memory). The vision tower stays frozen either way.
    loss_aggregation: "sequence_mean" (each response's tokens averaged, then responses, as TRL's grpo)
        or "token_mean" (every token of the mini-batch alike, the authors').
    advantage_epsilon: added to each group's reward std before dividing (1e-4 as TRL; the authors 1e-6).
    clip_eps_low / clip_eps_high: the ratio's clip range; dual_clip: with negative advantages, the loss
        is capped at `dual_clip * |A|` (the authors use 3.0); None: no cap.
    mini_batch_pairs: pairs per optimizer update: the rollout batch is gone through once (per
        `passes_per_batch`) in mini-batches of this many pairs, each its own update; None: one update.
    passes_per_batch: passes over each rollout batch (formerly `updates_per_batch`, a name that means
        optimizer updates per batch in Wan GRPO).
    micro_batch_pairs: pairs whose rollouts go through one forward and backward of an update (gradients
    accumulate over them; the same update as one pass, in less memory); None: all at once.
    head_learning_rate: the head and `<reward>` embedding are driven by the BT terms alone, and AdamW's
    step does not shrink with `bt_coefficient` (measured: 5e-5, 5e-3 and 0.5 move the head alike), so
    this (default: `learning_rate`), not the coefficient, sets how fast they move.
    masked_bt_coefficient: weight of a BT term on the CoT-masked sequences `[video ; prompt ; <reward>]`
        of each pair (one extra forward, no generation). Stage-2 BT otherwise only scores sequences with
        a CoT, so fast mode, which the diffusion integrations use, drifts; this keeps it calibrated. On
        (0.005) here, off in `rl_paper.yaml` (the authors' recipe has no such term).
    eval_data / eval_every: held-out pairs whose accuracy (with and without ties) is measured every
        `eval_every` steps in think mode (the policy's greedy CoT, scored by the head) and fast mode,
        with the share of greedy CoTs in the rubric's answer format; `eval_batch_size` videos at a time.
    rollout_engine: "hf" samples the rollouts with Hugging Face `generate` (every row of a batch decodes
        until the longest ends); "vllm" on a vLLM engine colocated with training, the policy's weights
        written into it after every update (`vllm_rollouts.py`). rollout_engine_arguments: more
        `vllm.LLM` arguments for it (`gpu_memory_utilization`, `enable_sleep_mode`, `max_model_len`, ...).
    """

    RENAMED_KEYS = {"updates_per_batch": "passes_per_batch"}

    model: str
    train_data: str
    instruction_file: str | None = None
    group_size: int = 8
    pairs_per_step: int = 8
    steps: int = 65
    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0  # below 1, rollouts come from a truncated distribution the log-probs do not renormalise
    grpo_coefficient: float = 1.0
    bt_coefficient: float = 0.005
    masked_bt_coefficient: float = 0.005
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.2
    kl_beta: float = 0.04
    dual_clip: float | None = None
    advantage_epsilon: float = 1e-4
    loss_aggregation: str = "sequence_mean"
    passes_per_batch: int = 1
    mini_batch_pairs: int | None = None
    micro_batch_pairs: int | None = None
    lora: bool = True
    learning_rate: float = 1e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    lora_rank: int = 64
    lora_alpha: int | None = None
    format_weight: float | None = None
    quality_weight: float | None = None
    length_weight: float | None = None
    length_unit: str | None = None
    length_levels: list | None = None
    answer_parsing: str | None = None
    eval_data: str | None = None
    eval_every: int = 10
    eval_batch_size: int = 8
    save_every: int = 10
    rollout_engine: str = "hf"
    rollout_engine_arguments: dict | None = None

    def __post_init__(self):
        super().__post_init__()  # wrong types, non-finite numbers and counts below 1 (`check_values`)
        if self.group_size < 2:
            raise DeScoreInputError(
                f"group_size must be at least 2 (advantages are normalised in a group), got {self.group_size}"
            )
        if self.loss_aggregation not in ("sequence_mean", "token_mean"):
            raise DeScoreInputError(
                f"loss_aggregation must be 'sequence_mean' or 'token_mean', got {self.loss_aggregation!r}"
            )
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise DeScoreInputError(f"dual_clip must be above 1 (or None), got {self.dual_clip}")
        if self.rollout_engine not in ROLLOUT_ENGINES:
            raise DeScoreInputError(f"rollout_engine must be one of {ROLLOUT_ENGINES}, got {self.rollout_engine!r}")
        if self.rollout_engine_arguments is not None and not isinstance(self.rollout_engine_arguments, dict):
            raise DeScoreInputError(
                "rollout_engine_arguments: expected a mapping of vllm.LLM arguments, "
                f"got {self.rollout_engine_arguments!r}"
            )
        if self.rollout_engine == "vllm" and importlib.util.find_spec("vllm") is None:
            raise vllm_missing("rollout_engine", "docs/scaling-out.md")
        if self.instruction_file is not None and not Path(self.instruction_file).is_file():
            raise FileNotFoundError(f"instruction_file {self.instruction_file}: no such file")

    def rewards(self, rubric: Rubric) -> RolloutRewardConfig:
        """The rule rewards: the rubric's defaults (the authors' for `descore`) with any field set here."""
        fields = ("format_weight", "quality_weight", "length_weight", "length_unit", "length_levels", "answer_parsing")
        chosen = {name: getattr(self, name) for name in fields if getattr(self, name) is not None}
        if "length_levels" in chosen:
            chosen["length_levels"] = tuple(tuple(level) for level in chosen["length_levels"])
        return dataclasses.replace(rubric.rewards, **chosen)


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    beta: float,
    dual_clip: float | None = None,
    aggregation: str = "sequence_mean",
    token_count: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped GRPO loss with a k3 KL penalty.

    logprobs / old_logprobs / ref_logprobs / mask: `(N, L)` per response token; advantages `(N,)`.
    aggregation "sequence_mean": each response's tokens averaged, then the responses; "token_mean":
    the sum over tokens divided by `token_count` (default: this batch's tokens; pass a mini-batch's
    count when it is split into micro-batches). `dual_clip` caps the loss of negative advantages.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    advantage = advantages[:, None]
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.minimum(ratio * advantage, clipped * advantage)
    if dual_clip is not None:
        per_token = torch.where(advantage < 0, torch.minimum(per_token, -dual_clip * advantage), per_token)
    log_ratio_ref = ref_logprobs - logprobs
    kl = torch.exp(log_ratio_ref) - log_ratio_ref - 1.0
    per_token = per_token + beta * kl
    mask = mask.to(per_token.dtype)
    tokens = mask.sum(1).clamp(min=1.0)
    if aggregation == "token_mean":
        loss = (per_token * mask).sum() / (token_count or mask.sum().clamp(min=1.0))
    else:
        loss = ((per_token * mask).sum(1) / tokens).mean()
    with torch.no_grad():
        was_clipped = ((ratio < 1.0 - eps_low) & (advantage < 0)) | ((ratio > 1.0 + eps_high) & (advantage > 0))
        stats = {
            "kl": float(((kl * mask).sum(1) / tokens).mean()),
            "clip_fraction": float((was_clipped.to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1.0)),
        }
    return loss, stats


@contextlib.contextmanager
def reference_policy(model: DeScoreModel):
    """Run the stage-1 (reference) policy: the frozen stage-1 adapter, or no adapter at all."""
    backbone = model.backbone
    if "reference" in backbone.peft_config:
        backbone.set_adapter("reference")
        try:
            yield
        finally:
            backbone.set_adapter("default")
    else:
        with backbone.disable_adapter():
            yield


@torch.no_grad()
def policy_logprobs(model: DeScoreModel, rollouts: Rollouts) -> torch.Tensor:
    """The current policy's CoT log-probs `(N, L)`, without gradients (the old policy of an update)."""
    return logprobs_and_rewards(model, rollouts)[0]


@torch.no_grad()
def reference_logprobs(model: DeScoreModel, reference: DeScoreModel | None, rollouts: Rollouts) -> torch.Tensor:
    """The reference policy's CoT log-probs `(N, L)`: a frozen reference model, or the reference adapter."""
    if reference is not None:
        return logprobs_and_rewards(reference, rollouts)[0]
    with reference_policy(model):
        return logprobs_and_rewards(model, rollouts)[0]


def prepare_policy(model: DeScoreModel, config: RLConfig) -> DeScoreModel:
    """Give the stage-1 model a trainable adapter and a way to its reference (or, with `lora` off, make
    its language model trainable, a stage-1 adapter merged first); freeze the vision tower."""
    if not config.lora:
        if isinstance(model.backbone, PeftModel):
            model.backbone = model.backbone.merge_and_unload()
        model.train_backbone_fully(vision=False, lm_head=True)
    elif isinstance(model.backbone, PeftModel):
        adapter = Path(config.model) / ADAPTER_DIR
        model.backbone.load_adapter(adapter, adapter_name="reference", is_trainable=False)
        model.backbone.set_adapter("default")
    else:
        model.add_lora(config.lora_rank, config.lora_alpha, dropout=0.0)
    model.set_vision_trainable(False)
    for module in model.backbone.modules():  # no LoRA dropout: the old, reference and policy passes must agree
        for adapter in getattr(module, "lora_dropout", {}):
            module.lora_dropout[adapter] = torch.nn.Identity()
    return model.train()


def bt_on_rollouts(rewards: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """BT loss of the head's rewards on (A rollout i, B rollout i) and its pair accuracy (decided pairs)."""
    half = len(rewards) // 2
    reward_a, reward_b = rewards[:half], rewards[half:]
    decided = labels != 0
    accuracy = (
        float(((reward_a - reward_b)[decided] * labels[decided] > 0).float().mean()) if decided.any() else math.nan
    )
    return labelled_bradley_terry_loss(reward_a, reward_b, labels), accuracy


def policy_update(
    model: DeScoreModel, optimizer, rollouts: Rollouts, config: RLConfig, run=None, reference=None
) -> dict[str, float]:
    """Optimizer steps of `grpo_coefficient * L_GRPO + bt_coefficient * L_BT` on one rollout batch:
    `passes_per_batch` passes over it in mini-batches of `mini_batch_pairs` pairs, one step each, each
    step's gradients accumulated over micro-batches of `micro_batch_pairs` pairs; with several
    processes, gradients are averaged across them before each step. `reference`: a frozen reference
    model (full fine-tune); None switches to the reference adapter. Returns the last pass's statistics
    (averaged over its mini-batches). `run`: the `TrainingRun` whose autocast, backward pass and optimizer
    step the update uses (its sharding's); None: plain ones on one process."""
    group = config.group_size
    autocast = run.autocast if run is not None else contextlib.nullcontext
    backward = run.backward if run is not None else torch.Tensor.backward
    step = run.optimizer_step if run is not None else lambda opt: optimizer_step(None, opt, config.max_grad_norm)
    mini_batches = [
        [select_rollouts(mini, rows) for rows in pair_micro_batches(mini, group, config.micro_batch_pairs)]
        for mini in (
            select_rollouts(rollouts, rows) for rows in pair_micro_batches(rollouts, group, config.mini_batch_pairs)
        )
    ]
    with torch.no_grad(), autocast():
        grpo = config.grpo_coefficient != 0  # a BT-only update needs no old or reference pass
        old_logprobs = [[policy_logprobs(model, micro) if grpo else None for micro in mini] for mini in mini_batches]
        ref_logprobs = [
            [reference_logprobs(model, reference, micro) if grpo else None for micro in mini] for mini in mini_batches
        ]
    for _ in range(config.passes_per_batch):
        totals = dict.fromkeys(("loss", "grpo_loss", "bt_loss", "masked_bt_loss", "kl", "clip_fraction"), 0.0)
        head_sides = ([], [])
        for mini, olds, refs in zip(mini_batches, old_logprobs, ref_logprobs):
            rows = sum(len(micro.texts) for micro in mini)
            tokens = float(sum(micro.response_mask.sum() for micro in mini))
            decided = max(1, sum(int((micro.labels != 0).sum()) for micro in mini))
            decided_pairs = max(1, sum(int((micro.labels[::group] != 0).sum()) for micro in mini))
            for micro, old, ref in zip(mini, olds, refs):
                # Each term weighted by its share of the mini-batch's rollouts (GRPO; token-mean divides by
                # the mini-batch's tokens already) or decided pairs (BT): the sum over micro-batches is the
                # loss of the whole mini-batch.
                token_mean = config.loss_aggregation == "token_mean"
                grpo_share = 1.0 if token_mean else len(micro.texts) / rows
                bt_share = int((micro.labels != 0).sum()) / decided
                with autocast():
                    logprobs, rewards = logprobs_and_rewards(model, micro)
                    if old is None:  # no GRPO term: ratio 1, no KL
                        old = ref = logprobs.detach()
                    policy_loss, stats = grpo_loss(
                        logprobs,
                        old,
                        ref,
                        micro.advantages,
                        micro.response_mask,
                        config.clip_eps_low,
                        config.clip_eps_high,
                        config.kl_beta,
                        config.dual_clip,
                        config.loss_aggregation,
                        tokens if token_mean else None,
                    )
                    bt_loss, _ = bt_on_rollouts(rewards, micro.labels)
                    loss = config.grpo_coefficient * grpo_share * policy_loss
                    loss = loss + config.bt_coefficient * bt_share * bt_loss
                    masked_bt = torch.zeros(())
                    if config.masked_bt_coefficient:
                        pair_labels = micro.labels[::group]
                        masked_bt, _ = bt_on_rollouts(masked_rewards(model, micro, group), pair_labels)
                        masked_share = int((pair_labels != 0).sum()) / decided_pairs
                        loss = loss + config.masked_bt_coefficient * masked_share * masked_bt
                backward(loss)
                for side, values in zip(head_sides, rewards.detach().chunk(2)):
                    side.append(values)
                share, updates = len(micro.texts) / rows, len(mini_batches)
                totals["loss"] += loss.item() / updates
                totals["grpo_loss"] += grpo_share * policy_loss.item() / updates
                totals["bt_loss"] += bt_share * bt_loss.item() / updates
                if config.masked_bt_coefficient:
                    totals["masked_bt_loss"] += masked_share * masked_bt.item() / updates
                totals["kl"] += share * stats["kl"] / updates
                totals["clip_fraction"] += share * stats["clip_fraction"] / updates
            step(optimizer)
    head_accuracy = bt_on_rollouts(torch.cat([*head_sides[0], *head_sides[1]]), rollouts.labels)[1]
    return {
        **totals,
        "rollout_reward": float(rollouts.rewards.mean()),
        **{f"reward_{name}": float(values.mean()) for name, values in rollouts.terms.items()},
        "format_rate": float(rollouts.terms["format"].mean()),
        "head_pair_accuracy": head_accuracy,
    }


@torch.no_grad()
def evaluate_policy(model: DeScoreModel, pairs: list[PreferencePair], config: RLConfig) -> dict[str, float]:
    """Held-out pair accuracy, with and without ties, in think mode (the policy's greedy CoT scored by
    the head) and fast mode (the CoT masked), and the share of greedy CoTs in the rubric's format."""
    was_training = model.training
    model.eval()
    videos = [p.video_a for p in pairs] + [p.video_b for p in pairs]
    prompts = [p.prompt for p in pairs] * 2
    metrics = {}
    for mode, think in (("think", True), ("fast", False)):
        results = model.score(
            videos, prompts, think=think, max_new_tokens=config.max_new_tokens, batch_size=config.eval_batch_size
        )
        if think:
            metrics["think_format_rate"] = float(np.mean([model.rubric.parse(r.cot).well_formed for r in results]))
        rewards = [r.reward for r in results]
        margins = np.asarray(rewards[: len(pairs)]) - np.asarray(rewards[len(pairs) :])
        result = preference_metrics([p.human for p in pairs], margins)
        metrics[f"{mode}_accuracy"] = result["accuracy_without_ties"]
        metrics[f"{mode}_accuracy_with_ties"] = result["accuracy_with_ties"]
    model.train(was_training)
    return metrics


def check_truths(pairs: list[PreferencePair], rubric_name: str) -> None:
    """Every pair carries `scores_a` and `scores_b` in the rubric's scale; else `DataError` listing each row."""
    rubric = get_rubric(rubric_name)
    problems = []
    for pair in pairs:
        for name in ("scores_a", "scores_b"):
            truth = getattr(pair, name)
            problem = "missing (stage 2 needs ground-truth sub-scores)" if truth is None else rubric.check_truth(truth)
            if problem:
                problems.append(f"{pair.source}: {name} {problem} (the model's rubric is {rubric.name!r})")
    if problems:
        raise DataError(problems)


def train(config: RLConfig, model: DeScoreModel | None = None, stop_after: int | None = None) -> dict:
    """Run stage 2, resuming from the newest checkpoint in `output_dir`. Returns the trainer state
    (`training/run.py`): each step's losses, rule rewards, KL, clip fraction and head accuracy, and the
    held-out evaluations.

    `model`: the stage-1 model, already loaded (with `is_trainable=True`), made the policy by
    `prepare_policy` and trained in place; None loads `config.model`, which names the stage-1
    checkpoint either way (the reference adapter or the frozen reference is read from it)."""
    template = read_instruction_file(config.instruction_file)
    pairs = read_pairs(config.train_data, template=template)  # JSONL, or the authors' stage-2 CSV
    check_truths(pairs, (model.config if model is not None else read_config(config.model)).rubric)  # before loading
    eval_pairs = read_pairs(config.eval_data) if config.eval_data else []
    run = TrainingRun(config, "dual-objective RL", config.steps)
    accelerator = run.accelerator
    model = prepare_policy(model or DeScoreModel.from_pretrained(config.model, is_trainable=True), config)
    model.to(accelerator.device)
    reference = None
    if not config.lora:  # a full fine-tune moves every weight: the reference is a frozen copy of stage 1,
        # in the policy's master dtype, so that under the same autocast it computes what the policy does
        reference = DeScoreModel.from_pretrained(config.model, dtype=torch.float32)
        reference = run.shard(reference.requires_grad_(False).eval().to(accelerator.device), trained=False)
    run.shard(model)
    optimizer = torch.optim.AdamW(
        model.optimizer_groups(config.learning_rate, config.head_learning_rate), weight_decay=config.weight_decay
    )
    run.resume(model, optimizer)
    engine = None
    if config.rollout_engine == "vllm" and not run.finished:  # a finished run samples nothing
        from .vllm_rollouts import VLLMRollouts

        arguments = {
            "max_model_len": config.max_new_tokens + ROLLOUT_PROMPT_ROOM,
            **(config.rollout_engine_arguments or {}),
        }
        engine = VLLMRollouts(config.model, run.output_dir / ROLLOUT_EXPORT_DIR, **arguments)
        engine.sync(model)  # the policy as resumed

    def evaluate() -> dict:  # greedy scoring: no random draws, so a resumed run stays exact
        with run.autocast():
            return evaluate_policy(model, eval_pairs, config)

    if run.step == 0 and eval_pairs:
        run.evaluate(evaluate)
    stop = run.finished
    while not stop:
        rank, processes = accelerator.process_index, accelerator.num_processes
        batch = [
            pairs[i] for i in epoch_batch(len(pairs), run.step, config.pairs_per_step, config.seed, rank, processes)
        ]
        run.seed_step()  # the rollouts' sampling
        model.eval()
        with run.autocast():
            if engine is None:
                rollouts = sample_rollouts(model, batch, config)
            else:
                rollouts = engine.sample(model, batch, config, seed=run.step_seed(stream=2))
                engine.sleep()
        model.train()
        metrics = policy_update(model, optimizer, rollouts, config, run, reference)
        stop = run.end_step(metrics, evaluate if eval_pairs else None, stop_after)
        if engine is not None and not stop:
            engine.sync(model)  # the next step samples from the updated policy
    if engine is not None:
        engine.close()
        if run.finished and accelerator.is_main_process:  # the export is for resuming; a finished run needs none
            shutil.rmtree(run.output_dir / ROLLOUT_EXPORT_DIR, ignore_errors=True)
    trained = [*model.config.training, run.record(config.train_data, len(pairs))]
    model.config = dataclasses.replace(model.config, training=trained)  # for the model card
    return run.finish(lambda path, state: model.save_pretrained(path, not config.lora, backbone_state=state))
