"""Stage 1, discriminative cold start (paper section 3.2).

Each video of a pair is scored as `[video ; prompt ; cot ; <reward>]`; with probability `p_mask`,
drawn independently for every scored sequence, its CoT is dropped (`[video ; prompt ; <reward>]`),
so the head learns from the raw video as well as from the reasoning. Loss: Bradley-Terry
`-log sigmoid(r_w - r_l)` on decided pairs (ties skipped), or Rao-Kupper with `tie_theta` to learn
from ties too. LoRA on the language model (or a full fine-tune); the head and the `<reward>`
embedding always train fully. AdamW, warm-up then cosine decay, effective batch through gradient
accumulation, accelerate for devices and precision, atomic checkpoints with exact resume.

    descore train cold-start --config cold_start.yaml [key=value ...]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from tqdm.auto import tqdm

from ..data import DataError, PairBatch, PairCollator, PairDataset, PreferencePair, read_pairs
from ..errors import DeScoreInputError
from ..evaluation.metrics import preference_metrics
from ..hub import has_descore_config
from ..losses import labelled_bradley_terry_loss, rao_kupper_loss
from ..modeling import CONFIG_NAME, DeScoreConfig, DeScoreModel
from ..rubrics import read_instruction_file
from ..video import VideoSampling
from .config import TrainerConfig
from .distributed import epoch_shard, shard_size
from .run import TrainingRun


@dataclass(kw_only=True)
class ColdStartConfig(TrainerConfig):
    """Stage-1 settings (beside `TrainerConfig`'s). Values the paper lost are choices, marked so.

    model: a VLM id or path (a fresh head is added), or a DeScore checkpoint to continue from.
    train_data / eval_data: this project's JSONL, the authors' stage-1 CSV (columns `videos`, `problem`,
        `CoT_A`, `CoT_B`, `GSB`), or a VideoAlign CSV (labels from `label_column`).
    rubric / instruction_file: the new model's rubric ("descore" or "likert5") and, optionally, a text
        file with its instruction (a `{prompt}` placeholder), e.g. the authors' exact wording.
    head_bias: a bias in the linear head (off, as the authors': BT cannot train one).
    p_mask: probability of dropping the CoT (0.5, as the authors). mask_per: "pair" (both videos of a
        pair keep or drop it together, as the authors) or "sequence" (each video draws its own).
    loss: "bt" (pairs labelled tie are skipped) or "rao_kupper" (ties used, `tie_theta`).
    lora: LoRA on the language model (rank 64 as in the paper); False for a full fine-tune.
    adapt_vision: LoRA on the vision tower too; in a full fine-tune, whether the vision tower trains.
    train_vision: train the vision tower and merger fully (float32 master weights), beside LoRA on the
        language model (the authors' recipe); checkpoints then carry the trained tower.
    learning_rate: 1e-4 (LoRA) is this library's choice; the authors train every group at 2e-6.
        head_learning_rate: None = the same.
    lr_scheduler: "cosine" (after warm-up) or "constant_with_warmup" (the authors').
    batch_size: effective pairs per optimizer step (32 in the paper), reached by accumulating
        `micro_batch_size` pairs per process.
    max_steps: stop after this many optimizer steps (None: `epochs` full passes).
    """

    model: str
    train_data: str
    eval_data: str | None = None
    label_column: str | None = None
    rubric: str = "descore"
    instruction_file: str | None = None
    p_mask: float = 0.5
    mask_per: str = "pair"
    loss: str = "bt"
    tie_theta: float = 5.0
    head_bias: bool = False
    sampling: dict = field(default_factory=dict)
    lora: bool = True
    lora_rank: int = 64
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    lora_target_modules: list = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    adapt_vision: bool = False
    train_vision: bool = False
    learning_rate: float = 1e-4
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    batch_size: int = 32
    micro_batch_size: int = 4
    epochs: int = 2
    max_steps: int | None = None
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    gradient_checkpointing: bool = False
    log_every: int = 10
    eval_every: int = 100
    num_workers: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.p_mask <= 1.0:
            raise DeScoreInputError(f"p_mask must lie in [0, 1], got {self.p_mask}")
        if self.loss not in ("bt", "rao_kupper"):
            raise DeScoreInputError(f"loss must be 'bt' or 'rao_kupper', got {self.loss!r}")
        if self.batch_size % self.micro_batch_size:  # both are at least 1 (check_values)
            raise DeScoreInputError(
                f"batch_size {self.batch_size} must be a positive multiple of micro_batch_size {self.micro_batch_size}"
            )
        if self.lora and self.adapt_vision and self.train_vision:
            raise DeScoreInputError(
                "adapt_vision and train_vision: the vision tower gets LoRA or trains fully, not both"
            )
        if self.mask_per not in ("pair", "sequence"):
            raise DeScoreInputError(f"mask_per must be 'pair' or 'sequence', got {self.mask_per!r}")
        if self.lr_scheduler not in ("cosine", "constant_with_warmup"):
            raise DeScoreInputError(
                f"lr_scheduler must be 'cosine' or 'constant_with_warmup', got {self.lr_scheduler!r}"
            )
        if self.instruction_file is not None and not Path(self.instruction_file).is_file():
            raise FileNotFoundError(f"instruction_file {self.instruction_file}: no such file")
        known = {f.name for f in dataclasses.fields(VideoSampling)}
        unknown = sorted(set(self.sampling) - known)
        if unknown:
            raise DeScoreInputError(
                f"config key 'sampling': unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        try:
            VideoSampling(**self.sampling)
        except (TypeError, ValueError) as error:
            raise DeScoreInputError(f"config key 'sampling': {error}") from None


def accumulation_steps(batch_size: int, micro_batch_size: int, processes: int) -> int:
    """Micro-batches each process accumulates per optimizer step, so that a step sees `batch_size` pairs."""
    per_step = micro_batch_size * processes
    if batch_size % per_step:
        raise DeScoreInputError(
            f"batch_size {batch_size} is not a multiple of micro_batch_size {micro_batch_size} x {processes} "
            f"process(es) = {per_step}: the effective batch would not be {batch_size}"
        )
    return batch_size // per_step


def cot_mask(count: int, p_mask: float, key: tuple[int, ...]) -> list[bool]:
    """Which of `count` draws drop their CoT (True = dropped), drawn from `key` (the step's seed and the
    micro-batch) alone, so that a resumed run draws the same masks and each process its own."""
    return (np.random.default_rng(key).random(count) < p_mask).tolist()


def masked_cots(
    pairs: list[PreferencePair], p_mask: float, key: tuple[int, ...], per: str = "pair"
) -> tuple[list, list]:
    """The CoTs of the A and B videos, dropped (None) with probability `p_mask`: once per pair (both
    videos together) or once per sequence."""
    if per == "pair":
        masks = cot_mask(len(pairs), p_mask, key) * 2
    else:
        masks = cot_mask(2 * len(pairs), p_mask, key)
    cots_a = [None if masked else pair.cot_a for pair, masked in zip(pairs, masks[: len(pairs)])]
    cots_b = [None if masked else pair.cot_b for pair, masked in zip(pairs, masks[len(pairs) :])]
    return cots_a, cots_b


def build_model(config: ColdStartConfig) -> DeScoreModel:
    """The model to train: loaded or new (`config.model`), then set up by `prepare_model`."""
    if has_descore_config(config.model, CONFIG_NAME):  # a DeScore checkpoint (folder or Hub id), else a backbone
        model = DeScoreModel.from_pretrained(config.model, is_trainable=True)
    else:
        template = read_instruction_file(config.instruction_file)
        descore_config = DeScoreConfig(
            head_bias=config.head_bias,
            tie_theta=config.tie_theta if config.loss == "rao_kupper" else None,
            sampling=VideoSampling(**config.sampling),
            rubric=config.rubric,
            instruction_template=template,
        )
        model = DeScoreModel.from_backbone(config.model, descore_config, seed=config.seed)
    return prepare_model(model, config)


def prepare_model(model: DeScoreModel, config: ColdStartConfig) -> DeScoreModel:
    """`model` with LoRA or fully trainable per `config`, in train mode."""
    if config.lora and not isinstance(model.backbone, PeftModel):  # a loaded checkpoint keeps its adapter
        model.add_lora(
            config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_target_modules, config.adapt_vision
        )
    elif not config.lora:  # only what reaches the loss trains: scoring never uses the LM head
        model.train_backbone_fully(vision=config.adapt_vision, lm_head=False)
    if config.train_vision:  # the vision tower and its merger, fully
        model.set_vision_trainable(True)
    if config.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.backbone.enable_input_require_grads()
    return model.train()


def pair_rewards(model, batch: PairBatch, cots_a: list, cots_b: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards `(B,)` of the A and B videos of a batch, both scored in one backbone call."""
    prompts = [pair.prompt for pair in batch.pairs]
    rewards = model(batch.videos_a + batch.videos_b, prompts + prompts, cots_a + cots_b)
    return rewards[: len(prompts)], rewards[len(prompts) :]


def pair_loss(reward_a: torch.Tensor, reward_b: torch.Tensor, labels: torch.Tensor, config: ColdStartConfig):
    """BT on decided pairs (ties skipped), or Rao-Kupper, which learns from ties too."""
    if config.loss == "rao_kupper":
        return rao_kupper_loss(reward_a, reward_b, labels, config.tie_theta)
    return labelled_bradley_terry_loss(reward_a, reward_b, labels)


@torch.no_grad()
def evaluate_pairs(model: DeScoreModel, pairs: list[PreferencePair], use_cot: bool, batch_size: int = 8) -> dict:
    """Preference metrics of `model` on `pairs`, with their pre-collected CoTs or with the CoT masked."""
    was_training = model.training
    model.eval()
    collate = PairCollator(model.config.sampling)
    margins = []
    description = f"held-out pairs, {'with CoT' if use_cot else 'CoT masked'}"
    with tqdm(total=len(pairs), desc=description, unit="pair", leave=False) as progress:
        for start in range(0, len(pairs), batch_size):
            batch = collate(pairs[start : start + batch_size])
            cots_a = [p.cot_a if use_cot else None for p in batch.pairs]
            cots_b = [p.cot_b if use_cot else None for p in batch.pairs]
            reward_a, reward_b = pair_rewards(model, batch, cots_a, cots_b)
            margins += (reward_a - reward_b).tolist()
            progress.update(len(batch.pairs))
    model.train(was_training)
    return preference_metrics([p.human for p in pairs], margins)


def train(config: ColdStartConfig, model: DeScoreModel | None = None, stop_after: int | None = None) -> dict:
    """Run stage 1, resuming from the newest checkpoint in `output_dir` if there is one.

    `model`: a DeScore model to train (set up by `prepare_model`, and trained in place); None builds
    it from `config.model`. `stop_after` ends the run after that many optimizer steps, as an
    interruption would (the schedule still spans the whole run). Returns the trainer state
    (`training/run.py`): each step's loss and learning rate, the held-out accuracies with and without
    CoT before training and every `eval_every` steps.
    """
    from transformers import get_scheduler

    template = read_instruction_file(config.instruction_file)
    train_pairs = read_pairs(config.train_data, config.label_column, template)  # every problem reported up front
    eval_pairs = read_pairs(config.eval_data, config.label_column, template) if config.eval_data else []
    if config.loss == "bt" and not any(p.human for p in train_pairs):
        raise DataError(
            [f"{config.train_data}: every pair is a tie; the BT loss needs decided pairs (or loss: rao_kupper)"]
        )
    run = TrainingRun(config, "cold start", total_steps=0)  # set below: an epoch depends on the process count
    accelerator = run.accelerator
    accumulation = accumulation_steps(config.batch_size, config.micro_batch_size, accelerator.num_processes)
    batches_per_epoch = math.ceil(shard_size(len(train_pairs), accelerator.num_processes) / config.micro_batch_size)
    run.total_steps = config.max_steps or config.epochs * math.ceil(batches_per_epoch / accumulation)
    model = (build_model(config) if model is None else prepare_model(model, config)).to(accelerator.device)
    run.shard(model)
    optimizer = torch.optim.AdamW(
        model.optimizer_groups(config.learning_rate, config.head_learning_rate), weight_decay=config.weight_decay
    )
    warmup = round(config.warmup_ratio * run.total_steps)
    scheduler = get_scheduler(config.lr_scheduler, optimizer, warmup, run.total_steps)
    state = run.resume(model, optimizer, scheduler, epoch=0, batches_done=0)
    collate = PairCollator(model.config.sampling)

    def epoch_batches(epoch: int, skip: int) -> torch.utils.data.DataLoader:
        """This process's micro-batches of `epoch` after the first `skip` (skipped ones are never decoded)."""
        shard = epoch_shard(len(train_pairs), epoch, config.seed, accelerator.process_index, accelerator.num_processes)
        return torch.utils.data.DataLoader(
            torch.utils.data.Subset(PairDataset(train_pairs), shard[skip * config.micro_batch_size :]),
            batch_size=config.micro_batch_size,
            collate_fn=collate,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed + epoch),  # its workers' seeds: not drawn
        )  # from the global generator that LoRA dropout draws from, so a resumed run draws the same

    def evaluate() -> dict:
        row = {}
        for name, use_cot in (("cot", True), ("masked", False)):
            metrics = evaluate_pairs(model, eval_pairs, use_cot, config.micro_batch_size)
            row[f"accuracy_{name}"] = metrics["accuracy_without_ties"]
            row[f"accuracy_with_ties_{name}"] = metrics["accuracy_with_ties"]
        return row

    if run.step == 0 and eval_pairs:
        run.evaluate(evaluate)
    stop = run.finished
    window_loss, micro_batch = 0.0, 0  # the step's loss so far, and its micro-batches
    while not stop:
        for batch in epoch_batches(state["epoch"], state["batches_done"]):
            if micro_batch == 0:
                run.seed_step()  # a new step: its dropout draws
            state["batches_done"] += 1
            last_of_step = state["batches_done"] % accumulation == 0 or state["batches_done"] == batches_per_epoch
            cots_a, cots_b = masked_cots(batch.pairs, config.p_mask, (run.step_seed(), micro_batch), config.mask_per)
            micro_batch += 1
            labels = torch.tensor([p.human for p in batch.pairs], device=accelerator.device)
            with run.autocast():
                reward_a, reward_b = pair_rewards(model, batch, cots_a, cots_b)
                loss = pair_loss(reward_a, reward_b, labels, config) / accumulation
            run.backward(loss)
            window_loss += loss.item()
            if not last_of_step:
                continue
            run.optimizer_step(optimizer)
            learning_rate = scheduler.get_last_lr()[0]
            scheduler.step()
            if state["batches_done"] == batches_per_epoch:
                state["epoch"], state["batches_done"] = state["epoch"] + 1, 0
            metrics = {"loss": window_loss, "learning_rate": learning_rate}
            stop = run.end_step(metrics, evaluate if eval_pairs else None, stop_after)
            window_loss, micro_batch = 0.0, 0
            if stop or state["batches_done"] == 0:  # the run's end, or the epoch's: a new loader
                break
    trained = [*model.config.training, run.record(config.train_data, len(train_pairs))]
    model.config = dataclasses.replace(model.config, training=trained)  # for the model card
    return run.finish(lambda path, state: model.save_pretrained(path, not config.lora, backbone_state=state))
