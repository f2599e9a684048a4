"""DeScore: a VLM backbone thinks (writes a chain of thought), then a `<reward>` token and a head score.

Sequence scored (paper section 3.2)::

    [chat(video, rubric.instruction(prompt)) ; cot ; <reward>]    think mode and stage-1 training
    [chat(video, rubric.instruction(prompt)) ; <reward>]          fast mode (the masked-CoT path)

The reward is `head(h)`, `h` the backbone's last-layer hidden state at the `<reward>` position.
`<reward>` is a special token added to the tokenizer; its embedding is a separate trainable float32
parameter that a forward hook on the input embeddings puts in place wherever the token occurs, so
generation, M-RoPE and LoRA adapters work on the backbone unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForImageTextToText, AutoProcessor, BatchFeature, LogitsProcessorList

from .atomic import atomic_directory
from .errors import CheckpointError, DeScoreInputError, first_line
from .generation import PrivateSampler, TokenProgress
from .hub import checkpoint_folder, model_card
from .losses import rao_kupper_probabilities
from .rubrics import get_rubric
from .video import Video, VideoSampling, VideoSource, check_video_file, load_video

CONFIG_NAME = "descore_config.json"
CARD_NAME = "README.md"
SCORING_WEIGHTS_NAME = "descore_head.safetensors"
ADAPTER_DIR = "adapter"
BACKBONE_DIR = "backbone"
VISION_WEIGHTS_NAME = "vision_tower.safetensors"
# The language model's attention and MLP projections (Qwen2/2.5/3-VL names).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class DeScoreConfig:
    """What a DeScore checkpoint needs besides the backbone's own weights.

    backbone: Hugging Face id or local path of the VLM (`Qwen3VLForConditionalGeneration`-style).
    reward_token: the query token appended after the CoT.
    head_bias: whether the linear head has a bias. Off, as the authors': the Bradley-Terry loss sees
        only reward differences, so it cannot train one.
    tie_theta: Rao-Kupper theta (> 1) when the model was trained with ties; `compare` then also
        returns P(A>B), P(tie), P(B>A).
    sampling: how videos are sampled and sized for the backbone.
    rubric: the instruction, answer format and rule rewards (`rubrics.py`): "descore" or "likert5".
    instruction_template: the instruction text with `{prompt}`; None takes the rubric's built-in
        wording, and a saved checkpoint always records the text, so it keeps scoring with its own.
    training: the stages that trained it, oldest first (`{"stage", "data", "pairs", "steps",
        "evaluation"}`), for its model card.
    """

    backbone: str = "Qwen/Qwen3-VL-8B-Instruct"
    reward_token: str = "<reward>"
    head_bias: bool = False
    tie_theta: float | None = None
    sampling: VideoSampling = field(default_factory=VideoSampling)
    rubric: str = "descore"
    instruction_template: str | None = None
    training: list = field(default_factory=list)

    def __post_init__(self):
        get_rubric(self.rubric, self.instruction_template)  # an unknown name or a template without {prompt}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> DeScoreConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DeScoreInputError(
                f"{source}: unknown DeScore config keys {unknown}; expected some of {sorted(known)}"
            )
        if isinstance(values.get("sampling"), dict):
            values["sampling"] = VideoSampling(**values["sampling"])
        elif "sampling" in values:
            raise DeScoreInputError(f"{source}: sampling must be a mapping of VideoSampling fields")
        return cls(**values)


class RewardHead(nn.Module):
    """The regression head (linear, as the authors'): the `<reward>` hidden state `(B, hidden)` to a
    scalar reward `(B,)`."""

    def __init__(self, hidden_size: int, bias: bool = False):
        super().__init__()
        self.layers = nn.Linear(hidden_size, 1, bias=bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden).squeeze(-1)


@dataclass
class ScoreResult:
    """The score of one video: scalar reward, and when thinking, the CoT and what its answer says
    (sub-scores, and the overall score when the rubric has one)."""

    reward: float
    cot: str | None = None
    reasoning: str | None = None
    scores: dict[str, int | str] | None = None
    overall: float | None = None
    video: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Comparison:
    """`margin = r(A) - r(B)`; the three probabilities are set when the model has a ties parameter."""

    margin: float
    a: ScoreResult
    b: ScoreResult
    p_a_better: float | None = None
    p_tie: float | None = None
    p_b_better: float | None = None


class DeScoreModel(nn.Module):
    """Think-then-score video reward model on a Hugging Face VLM backbone."""

    def __init__(self, backbone: nn.Module, processor, config: DeScoreConfig, seed: int | None = None):
        """`seed` fixes the new head's initialisation; the global random generators are never advanced
        (building a model inside a seeded training loop changes none of its later draws)."""
        super().__init__()
        self.backbone = backbone
        self.processor = processor
        self.config = config
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # generation appends on the right
        tokenizer.add_special_tokens({"additional_special_tokens": [config.reward_token]})
        self.reward_token_id = tokenizer.convert_tokens_to_ids(config.reward_token)
        embeddings = backbone.get_input_embeddings()
        if self.reward_token_id >= embeddings.num_embeddings:
            backbone.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            embeddings = backbone.get_input_embeddings()
        hidden_size = backbone.config.get_text_config().hidden_size
        self.reward_embedding = nn.Parameter(embeddings.weight.detach().float().mean(0).clone())
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.head = RewardHead(hidden_size, config.head_bias)
        self.head.to(self.reward_embedding.device)
        self.rubric = get_rubric(config.rubric, config.instruction_template)
        # Whether the vision tower's weights differ from the backbone's: then a checkpoint without the
        # backbone carries them (`VISION_WEIGHTS_NAME`).
        self.vision_tower_trained = False
        # Whether FSDP shards the backbone over processes (`training/sharding.py`): generation then runs
        # every process's forwards until all have finished (`synced_gpus`), as FSDP's collectives need.
        self.sharded = False
        self._hook = embeddings.register_forward_hook(self._put_reward_embedding)
        video_processor = processor.video_processor
        factor = video_processor.patch_size * video_processor.merge_size
        video_processor.max_video_tokens = max(1, config.sampling.max_pixels_per_frame // factor**2)

    def _put_reward_embedding(self, module, args, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the input embeddings: the trainable `<reward>` embedding at its positions."""
        is_reward = (args[0] == self.reward_token_id).unsqueeze(-1)
        return torch.where(is_reward, self.reward_embedding.to(output.dtype), output)

    # ----------------------------------------------------------------------------------------- loading

    @classmethod
    def from_backbone(
        cls,
        backbone: str | os.PathLike = DeScoreConfig.backbone,
        config: DeScoreConfig | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        seed: int | None = None,
    ) -> DeScoreModel:
        """A new DeScore (fresh head and `<reward>` embedding) on a pretrained VLM id or path."""
        check_device(device)
        config = dataclasses.replace(config or DeScoreConfig(), backbone=recorded_backbone(backbone))
        model, processor = _load_backbone(str(backbone), dtype, trust_remote_code)
        return cls(model, processor, config, seed=seed).to(device or model.device)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        is_trainable: bool = False,
        backbone: str | os.PathLike | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
    ) -> DeScoreModel:
        """Load a checkpoint written by `save_pretrained`: a folder, or a Hub id (`org/name`, at `revision`,
        through the Hub cache at `cache_dir`; `hub.py`). `backbone`: where the backbone it names is on this
        machine (a local copy of the hub model it was trained on, say), instead of the path or id recorded
        in it."""
        check_device(device)
        path = checkpoint_folder(path, revision, cache_dir)
        config = read_config(path)
        if backbone is not None:
            config = dataclasses.replace(config, backbone=str(backbone))
        weights = path / SCORING_WEIGHTS_NAME
        scoring_state = _read_scoring_state(weights)  # a damaged checkpoint fails before the backbone loads
        if (path / config.backbone).is_dir():  # a local backbone is recorded by absolute path from here on
            config = dataclasses.replace(config, backbone=str((path / config.backbone).resolve()))
        backbone, processor = _load_backbone(config.backbone, dtype, trust_remote_code, checkpoint=path)
        model = cls(backbone, processor, config)
        if (path / VISION_WEIGHTS_NAME).is_file():
            model.load_vision_tower(path / VISION_WEIGHTS_NAME)
        if (path / ADAPTER_DIR).is_dir():
            model.backbone = PeftModel.from_pretrained(model.backbone, path / ADAPTER_DIR, is_trainable=is_trainable)
        model.load_scoring_state(scoring_state, source=str(weights))
        return model.to(device or backbone.device)

    def scoring_state(self) -> dict[str, torch.Tensor]:
        """The weights DeScore adds to the backbone: the `<reward>` embedding and the head."""
        state = {f"head.{name}": value for name, value in self.head.state_dict().items()}
        state["reward_embedding"] = self.reward_embedding.detach()
        return {name: value.detach().cpu().contiguous() for name, value in state.items()}

    def load_scoring_state(self, state: dict[str, torch.Tensor], source: str = "scoring state") -> None:
        """Put a `scoring_state()` back; a missing, extra or wrong-shaped tensor raises `CheckpointError`."""
        head = {name[len("head.") :]: value for name, value in state.items() if name.startswith("head.")}
        expected = {f"head.{name}": value.shape for name, value in self.head.state_dict().items()}
        expected["reward_embedding"] = self.reward_embedding.shape
        found = {name: value.shape for name, value in state.items()}
        if found != expected:
            raise CheckpointError(
                f"{source}: holds tensors {_shapes(found)}, this model expects {_shapes(expected)} "
                f"(another backbone, or a head with a bias?)"
            )
        with torch.no_grad():
            self.reward_embedding.copy_(state["reward_embedding"])
        self.head.load_state_dict(head)

    def load_vision_tower(self, path: Path) -> None:
        """Put trained vision-tower weights (a `save_pretrained` file) into the backbone."""
        visual = self.language_backbone.visual
        state = _read_safetensors(path)
        expected = visual.state_dict()
        if {n: v.shape for n, v in state.items()} != {n: v.shape for n, v in expected.items()}:
            raise CheckpointError(f"{path}: its tensors are not this backbone's vision tower (another backbone?)")
        visual.load_state_dict(state)
        self.vision_tower_trained = True

    def save_pretrained(
        self, path: str | os.PathLike, include_backbone: bool = False, backbone_state: dict | None = None
    ) -> None:
        """Write the checkpoint atomically: config JSON, head + `<reward>` safetensors, the PEFT
        adapter if any, the vision tower when it trained (and the backbone is not written whole), and
        with `include_backbone` (full fine-tunes) the backbone and processor. `backbone_state`: the
        backbone's state dict to write instead of its modules' (gathered whole when FSDP shards them)."""
        if include_backbone and isinstance(self.backbone, PeftModel):
            raise DeScoreInputError(
                "include_backbone=True with a LoRA adapter: merge it first, or save only the adapter"
            )
        config = dataclasses.replace(self.config, instruction_template=self.rubric.instruction_template)
        config = dataclasses.replace(config, backbone=BACKBONE_DIR) if include_backbone else config
        with atomic_directory(path, marker=CONFIG_NAME) as staging:
            save_file(self.scoring_state(), staging / SCORING_WEIGHTS_NAME)
            if isinstance(self.backbone, PeftModel):  # the trained adapter only (stage 2 also holds a reference)
                self.backbone.save_pretrained(
                    staging / ADAPTER_DIR, selected_adapters=["default"], state_dict=backbone_state
                )
            if self.vision_tower_trained and not include_backbone:
                save_file(self._vision_tower_state(backbone_state), staging / VISION_WEIGHTS_NAME)
            if include_backbone:
                self.backbone.save_pretrained(staging / BACKBONE_DIR, state_dict=backbone_state)
                self.processor.save_pretrained(staging / BACKBONE_DIR)
            (staging / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2))
            (staging / CARD_NAME).write_text(model_card(config, self.rubric))

    def push_to_hub(
        self,
        repo_id: str,
        include_backbone: bool = False,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload DeScore checkpoint",
    ):
        """Upload the checkpoint (`save_pretrained`'s files, the model card among them) to the Hub repository
        `repo_id`, created if it does not exist; returns the commit's information."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = Path(folder) / "checkpoint"
            self.save_pretrained(checkpoint, include_backbone=include_backbone)
            api.create_repo(repo_id, private=private, exist_ok=True)
            return api.upload_folder(repo_id=repo_id, folder_path=checkpoint, commit_message=commit_message)

    def _vision_tower_state(self, backbone_state: dict | None) -> dict[str, torch.Tensor]:
        """The vision tower's weights by their names in it, from its module or from `backbone_state`."""
        visual = self.language_backbone.visual
        if backbone_state is None:
            state = visual.state_dict()
        else:
            prefix = next(name for name, module in self.backbone.named_modules() if module is visual) + "."
            state = {n[len(prefix) :]: v for n, v in backbone_state.items() if n.startswith(prefix)}
        return {name: value.detach().cpu().contiguous() for name, value in state.items()}

    def add_lora(
        self,
        rank: int = 64,
        alpha: int | None = None,
        dropout: float = 0.05,
        target_modules: Sequence[str] = LORA_TARGETS,
        adapt_vision: bool = False,
    ) -> None:
        """Wrap the backbone with a LoRA adapter (peft) on the language model's `target_modules`, and on
        the vision tower's attention and MLP too with `adapt_vision`. The backbone's own weights freeze;
        the head and the `<reward>` embedding stay trainable."""
        names = "|".join(target_modules)
        pattern = rf".*language_model.*\.({names})"
        if adapt_vision:
            pattern = rf"({pattern})|(.*visual\.blocks.*\.(qkv|proj|linear_fc1|linear_fc2))"
        config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=dropout, target_modules=pattern)
        self.backbone = get_peft_model(self.backbone, config)

    def train_backbone_fully(self, vision: bool, lm_head: bool) -> None:
        """A full fine-tune: the backbone's own weights train, in float32 (master weights: a checkpoint may
        load in bf16; autocast sets the compute dtype). The vision tower and merger train only with
        `vision`, the LM head only with `lm_head` (scoring never reads it; CoT log-probs do)."""
        self.backbone.float().requires_grad_(True)
        self.unwrapped_backbone.lm_head.requires_grad_(lm_head)
        self.set_vision_trainable(vision)

    def set_vision_trainable(self, trainable: bool) -> None:
        """Whether the vision tower and its merger (adapters on them included) train. Trained, they keep
        float32 master weights whatever the backbone was loaded in (autocast sets the compute dtype),
        and checkpoints carry them."""
        visual = self.language_backbone.visual
        if trainable:
            visual.float()
            self.vision_tower_trained = True
        visual.requires_grad_(trainable)

    # ------------------------------------------------------------------------------------------ inputs

    @property
    def device(self) -> torch.device:
        return self.reward_embedding.device

    @property
    def unwrapped_backbone(self) -> nn.Module:
        """The `...ForConditionalGeneration` model, under its PEFT wrapper if it has one."""
        return self.backbone.get_base_model() if isinstance(self.backbone, PeftModel) else self.backbone

    @property
    def language_backbone(self) -> nn.Module:
        """The backbone without its LM head (`Qwen3VLModel`): it returns last-layer hidden states."""
        return self.unwrapped_backbone.model

    def optimizer_groups(self, learning_rate: float, head_learning_rate: float | None = None) -> list[dict]:
        """AdamW parameter groups: the backbone's trainable weights at `learning_rate`, the head and the
        `<reward>` embedding at `head_learning_rate` (default: the same)."""
        scoring = [self.reward_embedding, *self.head.parameters()]
        scoring_ids = {id(p) for p in scoring}
        backbone = [p for p in self.parameters() if p.requires_grad and id(p) not in scoring_ids]
        return [
            {"params": backbone, "lr": learning_rate},
            {"params": scoring, "lr": head_learning_rate or learning_rate},
        ]

    def load_videos(self, videos: Sequence[VideoSource | Video]) -> list[Video]:
        """Decode and validate videos with this model's sampling (`load_videos` below)."""
        return load_videos(videos, self.config.sampling)

    def chat_prefix(self, prompt: str) -> str:
        """The chat text up to the start of the assistant's answer (`chat_prefix` below)."""
        return chat_prefix(self.processor, self.rubric, prompt)

    def prepare_inputs(self, videos: Sequence[VideoSource | Video], prompts: Sequence[str]) -> BatchFeature:
        """Tokenise `[chat(video, prompt)]`, the part every scored sequence starts with, for a batch:
        left-padded, on the model's device."""
        videos = [fill_temporal_patch(video, self.processor) for video in self.load_videos(videos)]
        if len(videos) != len(prompts):
            raise DeScoreInputError(f"got {len(videos)} videos and {len(prompts)} prompts; expected equal")
        for index, prompt in enumerate(prompts):
            check_text(prompt, f"prompts[{index}]", self.config.reward_token)
        inputs = self.processor(
            text=[self.chat_prefix(prompt) for prompt in prompts],
            videos=[video.frames for video in videos],
            video_metadata=[video.metadata for video in videos],
            padding=True,
            return_tensors="pt",
            **processor_arguments(self.config.sampling),
        )
        return inputs.to(self.device)

    def tokenize_cots(self, cots: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each CoT's token ids on its own, as generation writes them after the prompt: `(B, L)` right-padded,
        and each length `(B,)`; None (a masked CoT) or "" is empty."""
        for index, cot in enumerate(cots):
            check_text(cot, f"cots[{index}]", self.config.reward_token, optional=True)
        tokenizer = self.processor.tokenizer
        ids = tokenizer([cot or "" for cot in cots], add_special_tokens=False).input_ids if cots else []
        cot_ids = torch.full((len(ids), max(map(len, ids), default=0)), tokenizer.pad_token_id, dtype=torch.long)
        for row, row_ids in enumerate(ids):
            cot_ids[row, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
        return cot_ids.to(self.device), torch.tensor([len(row_ids) for row_ids in ids], device=self.device)

    def scored_sequences(
        self,
        inputs: BatchFeature,
        cot_ids: torch.Tensor,
        cot_length: torch.Tensor,
        rows: Sequence[int] | None = None,
        video_features=None,
    ) -> dict:
        """Backbone inputs of `[prompt ; cot ; <reward>]`, the one sequence DeScore scores: prompt `rows[i]`
        of `prepare_inputs`' output (default: row i) followed by `cot_ids[i]` `(N, L)`, of which the first
        `cot_length[i]` tokens are the CoT and the rest (an end-of-sequence token, padding) is masked out
        of attention, so `<reward>` takes the position right after the CoT, then `<reward>`.

        The videos go in as pixels, or as `video_features` (the vision tower's output for the prompts,
        computed once and selected per row; needed when `rows` repeats a prompt)."""
        every_row = list(range(len(inputs["input_ids"])))
        rows = every_row if rows is None else list(rows)
        rows_tensor = torch.as_tensor(rows, device=cot_ids.device)
        prompt = {key: inputs[key][rows_tensor] for key in ("input_ids", "attention_mask", "mm_token_type_ids")}
        in_cot = torch.arange(cot_ids.shape[1], device=cot_ids.device) < cot_length[:, None]
        reward_column = cot_ids.new_full((cot_ids.shape[0], 1), self.reward_token_id)  # also when the CoT is empty
        sequence = {
            "input_ids": torch.cat([prompt["input_ids"], cot_ids, reward_column], dim=1),
            "attention_mask": torch.cat([prompt["attention_mask"], in_cot.long(), torch.ones_like(reward_column)], 1),
            "mm_token_type_ids": torch.cat(
                [prompt["mm_token_type_ids"], torch.zeros_like(cot_ids), torch.zeros_like(reward_column)], 1
            ),
            "video_grid_thw": inputs["video_grid_thw"][rows_tensor],
        }
        if video_features is not None:
            sequence["mm_encoder_outputs"] = {"video": select_video_features(video_features, rows)}
        elif rows == every_row:
            sequence["pixel_values_videos"] = inputs["pixel_values_videos"]
        else:
            raise ValueError("rows that select or repeat prompts need the prompts' video_features")
        return sequence

    # ----------------------------------------------------------------------------------------- scoring

    def rewards_of(self, sequences: dict) -> torch.Tensor:
        """Rewards `(N,)` of `scored_sequences`: the head on the last-layer hidden state at `<reward>`."""
        return self.head(self.language_backbone(**sequences).last_hidden_state[:, -1].float())

    def forward(
        self,
        videos: Sequence[VideoSource | Video],
        prompts: Sequence[str],
        cots: Sequence[str | None] | None = None,
    ) -> torch.Tensor:
        """Rewards `(B,)`, with gradients, for `[video ; prompt ; cot or nothing ; <reward>]`."""
        if cots is not None and len(cots) != len(prompts):
            raise DeScoreInputError(f"got {len(prompts)} prompts and {len(cots)} CoTs; expected one CoT (or None) each")
        inputs = self.prepare_inputs(videos, prompts)
        return self.rewards_of(self.scored_sequences(inputs, *self.tokenize_cots(cots or [None] * len(prompts))))

    @torch.no_grad()
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
        generation_kwargs: dict | None = None,
        progress: bool | None = None,
    ) -> list[ScoreResult]:
        """Score videos. With `think`, generate a CoT then score it from the generation's KV cache;
        without, score `[video ; prompt ; <reward>]` in one prefill. Every video is checked before the
        backbone runs; files are decoded batch by batch, so memory holds one batch of frames.
        `max_new_tokens` and `repetition_penalty` default to the rubric's (4,096 and 1.05 for `descore`).
        `progress`: a bar of videos scored, with the tokens written, when thinking (None: on a terminal)."""
        videos, prompts = score_inputs(videos, prompts, batch_size)
        videos = check_videos(videos, self.config.sampling)
        generation = dict(
            max_new_tokens=max_new_tokens or self.rubric.max_new_tokens,
            repetition_penalty=repetition_penalty or self.rubric.repetition_penalty,
            **(generation_kwargs or {}),
            do_sample=False,
        )
        if do_sample:  # from a generator of its own: the global ones are neither drawn from nor rewound
            generation["logits_processor"] = LogitsProcessorList([PrivateSampler(temperature, top_p, seed)])
        results = []
        hidden = True if not think else (None if progress is None else not progress)  # None: shown on a terminal
        with tqdm(total=len(videos), desc="thinking", unit="video", disable=hidden) as bar:
            for start in range(0, len(videos), batch_size):
                batch = self.load_videos(videos[start : start + batch_size])
                batch_prompts = prompts[start : start + batch_size]
                if think:
                    streamer = None if bar.disable else TokenProgress(bar, generation["max_new_tokens"])
                    results += self._think_and_score(batch, batch_prompts, {**generation, "streamer": streamer})
                else:
                    rewards = self(batch, batch_prompts)
                    results += [ScoreResult(r, video=v.name) for r, v in zip(rewards.tolist(), batch, strict=True)]
                bar.update(len(batch))
        return results

    def eos_token_ids(self, generation: dict | None = None) -> list[int]:
        """The tokens that end a CoT: `generation`'s `eos_token_id`, else the backbone's, else the tokenizer's."""
        eos = (generation or {}).get("eos_token_id", self.backbone.generation_config.eos_token_id)
        eos = self.processor.tokenizer.eos_token_id if eos is None else eos
        return [eos] if isinstance(eos, int) else list(eos)

    def unwritable_token_ids(self) -> list[int]:
        """Tokens a CoT must never contain: `<reward>` and the image / video placeholders."""
        placeholders = [getattr(self.processor, f"{kind}_token_id", None) for kind in ("image", "video")]
        return [self.reward_token_id] + [token for token in placeholders if token is not None]

    def generate_cots(self, inputs: BatchFeature, **generation) -> tuple[torch.Tensor, torch.Tensor, object]:
        """Generate CoTs for prepared inputs (no `<reward>`). `generation` goes to `generate`.

        Returns the generated tokens `(B, L)`, each row's CoT length `(B,)` (tokens before its first
        end-of-sequence token), and the generation's KV cache, which holds all tokens but the last.
        """
        eos_ids = self.eos_token_ids(generation)
        generation = {**generation, "eos_token_id": eos_ids}
        output = self.backbone.generate(
            **inputs,
            **generation,
            pad_token_id=self.processor.tokenizer.pad_token_id,
            suppress_tokens=self.unwritable_token_ids(),
            return_dict_in_generate=True,
            synced_gpus=self.sharded,
        )
        generated = output.sequences[:, inputs["input_ids"].shape[1] :]
        ended = torch.isin(generated, torch.tensor(eos_ids, device=generated.device))
        cot_length = torch.where(ended.any(1), ended.int().argmax(1), generated.shape[1])
        return generated, cot_length, output.past_key_values

    def reward_after_generation(
        self, inputs: BatchFeature, generated: torch.Tensor, cot_length: torch.Tensor, cache
    ) -> torch.Tensor:
        """Rewards `(B,)` from one step of `[last generated token, <reward>]` on the generation's cache.

        Tokens from each row's end-of-sequence token on are masked out and `<reward>` takes the
        position right after the row's CoT, so this equals a forward over `[prompt ; cot ; <reward>]`
        without a second prefill of the video and CoT.
        """
        length = generated.shape[1]
        in_cot = torch.arange(length, device=generated.device) < cot_length[:, None]  # (B, L)
        attention_mask = torch.cat(
            [inputs["attention_mask"], in_cot.long(), torch.ones_like(cot_length)[:, None]], dim=1
        )
        real_prompt_length = inputs["attention_mask"].sum(1)  # (B,), left padding excluded
        text_positions = torch.stack([real_prompt_length + length - 1, real_prompt_length + cot_length], dim=1)
        _, rope_deltas = self.language_backbone.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            video_grid_thw=inputs["video_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        # M-RoPE positions: row 0 is the text position, rows 1-3 add the video's offset.
        position_ids = torch.cat([text_positions[None], (text_positions + rope_deltas)[None].expand(3, -1, -1)])
        step_ids = torch.stack([generated[:, -1], torch.full_like(cot_length, self.reward_token_id)], dim=1)
        language = self.language_backbone
        hidden = language(
            input_ids=step_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{cache_keyword(language): cache},
        ).last_hidden_state[:, -1]
        return self.head(hidden.float())

    def _think_and_score(self, videos: list[Video], prompts: list[str], generation: dict) -> list[ScoreResult]:
        inputs = self.prepare_inputs(videos, prompts)
        generated, cot_length, cache = self.generate_cots(inputs, **generation)
        rewards = self.reward_after_generation(inputs, generated, cot_length, cache).tolist()
        results = []
        for row, video in enumerate(videos):
            cot = self.processor.tokenizer.decode(generated[row, : cot_length[row]], skip_special_tokens=True)
            answer = self.rubric.parse(cot)
            results.append(ScoreResult(rewards[row], cot, answer.reasoning, answer.scores, answer.overall, video.name))
        return results

    def compare(
        self, video_a: VideoSource | Video, video_b: VideoSource | Video, prompt: str, **score_kwargs
    ) -> Comparison:
        """Score two videos of one prompt; `margin = r(A) - r(B)`, with Rao-Kupper probabilities when
        the model has `tie_theta`."""
        a, b = self.score([video_a, video_b], [prompt, prompt], **score_kwargs)
        comparison = Comparison(margin=a.reward - b.reward, a=a, b=b)
        if self.config.tie_theta is not None:
            p_a, p_tie, p_b = rao_kupper_probabilities(torch.tensor(comparison.margin), self.config.tie_theta)
            comparison.p_a_better, comparison.p_tie, comparison.p_b_better = p_a.item(), p_tie.item(), p_b.item()
        return comparison


def load_videos(videos: Sequence[VideoSource | Video], sampling: VideoSampling) -> list[Video]:
    """Decode and validate videos (`VideoInputError` names the bad one); `Video`s are kept as they are."""
    return [
        video if isinstance(video, Video) else load_video(video, sampling, name=f"videos[{i}]")
        for i, video in enumerate(videos)
    ]


def check_videos(videos: Sequence[VideoSource | Video], sampling: VideoSampling) -> list[VideoSource | Video]:
    """Check every video before any model work, without holding every decoded file in memory: files are
    opened (decoded later, batch by batch, by `load_videos`), in-memory videos are sampled and converted now."""
    checked = []
    for index, video in enumerate(videos):
        if isinstance(video, (str, os.PathLike)):
            check_video_file(video)
            checked.append(video)
        elif isinstance(video, Video):
            checked.append(video)
        else:
            checked.append(load_video(video, sampling, name=f"videos[{index}]"))
    return checked


def check_text(text: object, where: str, reserved_token: str, optional: bool = False) -> None:
    """A prompt or CoT must be a string without the reserved `<reward>` token (None too when `optional`);
    `DeScoreInputError` naming `where` otherwise."""
    if text is None and optional:
        return
    if not isinstance(text, str):
        raise DeScoreInputError(f"{where}: expected a string, got {type(text).__name__}")
    if reserved_token in text:
        raise DeScoreInputError(f"{where}: contains the reserved token {reserved_token!r}")


def score_inputs(videos, prompts, batch_size: int) -> tuple[list, list[str]]:
    """What every scorer's `score` takes, as two equal lists (one path is one video, one prompt every
    video's); `DeScoreInputError` for unequal counts or a batch size below 1."""
    videos = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    prompts = [prompts] * len(videos) if isinstance(prompts, str) else list(prompts)
    if len(prompts) != len(videos):
        raise DeScoreInputError(f"got {len(videos)} videos and {len(prompts)} prompts; expected one prompt per video")
    if batch_size < 1:
        raise DeScoreInputError(f"batch_size must be at least 1, got {batch_size}")
    return videos, prompts


def processor_arguments(sampling: VideoSampling) -> dict:
    """The video processor's arguments on every path (HF and vLLM): frames come sampled by `load_video`,
    and sized within `sampling`'s pixel budget."""
    return dict(
        do_sample_frames=False,
        cap_pixels_per_frame=True,
        size={"shortest_edge": sampling.min_pixels_per_frame, "longest_edge": sampling.max_total_pixels},
    )


def chat_prefix(processor, rubric, prompt: str) -> str:
    """The chat text up to the start of the assistant's answer, with one video placeholder: where the
    instruction template's `<video>` marker is, else before the instruction."""
    before, after = rubric.instruction_around_video(prompt)
    content = [{"type": "text", "text": before}] if before else []
    content += [{"type": "video"}, {"type": "text", "text": after}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def fill_temporal_patch(video: Video, processor) -> Video:
    """A video of fewer frames than the backbone's temporal patch (a single frame, say) with its last frame
    repeated to fill it, so every path accepts what the processor would reject."""
    patch = getattr(processor.video_processor, "temporal_patch_size", 1) or 1
    missing = patch - video.frames.shape[0]
    if missing <= 0:
        return video
    indices = list(video.metadata.frames_indices) + [video.metadata.frames_indices[-1]] * missing
    frames = torch.cat([video.frames, video.frames[-1:].expand(missing, -1, -1, -1)])
    return Video(frames, dataclasses.replace(video.metadata, frames_indices=indices), video.name)


def select_video_features(features, rows: Sequence[int]):
    """The vision tower's features (`get_video_features(..., return_dict=True)`) of the videos at `rows`
    (an index may repeat: one entry per sequence row)."""
    return type(features)(
        pooler_output=tuple(features.pooler_output[i] for i in rows),
        deepstack_features=[tuple(layer[i] for i in rows) for layer in features.deepstack_features],
    )


def read_config(path: str | os.PathLike) -> DeScoreConfig:
    """The `DeScoreConfig` of the checkpoint `path` (a folder, or a Hub id: `hub.py`). `FileNotFoundError`
    when it holds none, `CheckpointError` saying what is wrong when it cannot be used."""
    config_path = checkpoint_folder(path) / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: not a DeScore checkpoint (no {CONFIG_NAME})")
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path}: cannot read it ({error.__class__.__name__}: {error})") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object, got {type(values).__name__}")
    try:
        return DeScoreConfig.from_dict(values, source=str(config_path))
    except (TypeError, ValueError) as error:
        raise CheckpointError(str(error) if str(config_path) in str(error) else f"{config_path}: {error}") from None


def _read_scoring_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a DeScore checkpoint holds its head and <reward> embedding there")
    return _read_safetensors(path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises SafetensorError or OSError on a torn or foreign file
        reason = first_line(error)
        raise CheckpointError(f"{path}: cannot read it, the file is truncated or corrupt ({reason})") from None


def _shapes(shapes: dict) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in sorted(shapes.items()))


def cache_keyword(module: nn.Module) -> str:
    """The name `module.forward` takes a KV cache by: `cache` from transformers 5.24, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def check_device(device: str | torch.device | None) -> None:
    """A `DeScoreInputError` for a CUDA device that this machine does not have, before any loading."""
    if device is None:
        return
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeScoreInputError(
            f"device {device!r}: not a device name; expected e.g. 'cpu', 'cuda', 'cuda:1'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeScoreInputError(f"device {str(device)!r}: torch sees no CUDA GPU on this machine; use device='cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeScoreInputError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")


_HUB_CACHE_SNAPSHOT = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\][^/\\]+[/\\]?$")


def recorded_backbone(backbone: str | os.PathLike) -> str:
    """What a checkpoint records as its backbone: a hub id as given, the hub id of a folder in the Hugging
    Face cache (`.../models--Org--Name/snapshots/<rev>`), else the folder's absolute path."""
    text = str(backbone)
    if not Path(text).is_dir():
        return text
    cached = _HUB_CACHE_SNAPSHOT.search(str(Path(text).resolve()))
    return f"{cached.group(1)}/{cached.group(2)}" if cached else str(Path(text).resolve())


def _load_backbone(backbone: str, dtype: torch.dtype | None, trust_remote_code: bool, checkpoint: Path | None = None):
    try:
        model = AutoModelForImageTextToText.from_pretrained(backbone, dtype=dtype, trust_remote_code=trust_remote_code)
        processor = AutoProcessor.from_pretrained(backbone, trust_remote_code=trust_remote_code)
    except OSError as error:  # not a folder here, not on the hub (or offline), no weights in it
        named = f"{checkpoint}: its backbone {backbone!r}" if checkpoint else f"backbone {backbone!r}"
        fix = (
            f"; put it there, or give where it is (--backbone, from_pretrained(..., backbone=WHERE_IT_IS)), "
            f"or set 'backbone' in {CONFIG_NAME}"
            if checkpoint
            else ""
        )
        reason = first_line(error)
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") and not Path(backbone).exists():
            reason = (
                f"HF_HUB_OFFLINE is set and {backbone!r} is not in the Hugging Face cache; fetch it where there is "
                f"a network (`hf download {backbone}`) and copy the cache, or give a local folder"
            )
        raise CheckpointError(
            f"{named} cannot be loaded: not a local folder, and the hub said: {reason}{fix}"
        ) from None
    return model.eval(), processor
