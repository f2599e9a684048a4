"""Stage 2's rollouts sampled on a vLLM engine colocated with training (`RLConfig.rollout_engine: vllm`).

The engine runs in the training process, on its GPU (`rollout_engine_arguments` set its share:
`gpu_memory_utilization`, and `enable_sleep_mode` to free its memory while the update runs). It starts
from the stage-1 checkpoint exported as a plain Hugging Face folder (`engines/export.py`), and after every
policy update `sync` writes the policy's current language-model weights into it (each LoRA layer with its
adapter merged, or every trained weight of a full fine-tune, gathered whole when sharded), so each step
samples from the policy whose log-probs it then computes. The head and `<reward>` play no part in sampling.

The sampled distribution is the one `rollouts.logprobs_and_rewards` describes: the rollout temperature,
top-p, no top-k, no repetition penalty, and the same tokens suppressed (`<reward>`, the vision
placeholders). The log-probs of the ratio and the KL stay the training model's own; vLLM's are kept
beside them (`Rollouts.sampler_logprobs`). The frames and prompt token ids are the HF path's
(`vllm_engine.ScoringRequests`). vLLM is imported when an engine is built, never by this module.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from ..data import PreferencePair
from ..engines.export import EXPORT_NAME, export_for_vllm
from ..engines.vllm_engine import ScoringRequests, check_engine_arguments
from ..modeling import DeScoreModel
from .rollouts import Rollouts, assemble_rollouts, encode_pairs, pair_videos
from .sharding import full_tensor

# What faithful rollouts need: log-probs of the distribution sampled from; the HF path's video
# normalisation; decoding settings from the request only.
ENGINE_ARGUMENTS = {"logprobs_mode": "processed_logprobs", "mm_device_do_normalize": False, "generation_config": "vllm"}
# The GPU is shared with training: the engine takes 60% of it (vLLM alone would take 90%).
ENGINE_DEFAULTS = {
    "enable_prefix_caching": True,
    "limit_mm_per_prompt": {"image": 0, "video": 1},
    "gpu_memory_utilization": 0.6,
}


def policy_weights(model: DeScoreModel) -> Iterator[tuple[str, torch.Tensor]]:
    """The backbone weights the policy trains, named as in the backbone's checkpoint: each LoRA layer's
    weight with its active adapter merged (`W + B A * scaling`), and every other trained backbone weight
    (a full fine-tune's), each gathered whole where it is sharded (every process must iterate all of them)."""
    backbone = model.backbone
    prefix = "base_model.model." if isinstance(backbone, PeftModel) else ""
    lora_layers = {name: module for name, module in backbone.named_modules() if isinstance(module, LoraLayer)}
    for name, layer in lora_layers.items():
        weight = full_tensor(layer.get_base_layer().weight).detach()
        if not layer.merged and not layer.disable_adapters:
            for adapter in (name for name in layer.active_adapters if name in layer.lora_A):
                delta = full_tensor(layer.lora_B[adapter].weight) @ full_tensor(layer.lora_A[adapter].weight)
                delta = delta.T if getattr(layer, "fan_in_fan_out", False) else delta
                weight = weight + (delta * layer.scaling[adapter]).to(weight.dtype)
        yield name.removeprefix(prefix) + ".weight", weight
    tied = backbone.get_output_embeddings().weight is backbone.get_input_embeddings().weight
    for name, parameter in backbone.named_parameters():
        if parameter.requires_grad and ".lora_" not in name:
            name = name.removeprefix(prefix).replace(".base_layer.", ".")
            weight = full_tensor(parameter).detach()
            yield name, weight
            if tied and parameter is backbone.get_input_embeddings().weight:
                yield "lm_head.weight", weight  # the export unties them


class VLLMRollouts:
    """A vLLM engine that samples stage 2's rollouts for the policy it is `sync`ed with.

    checkpoint: the stage-1 checkpoint (`RLConfig.model`), exported (`export_for_vllm`) for the engine's
        architecture, tokenizer and starting weights into `folder` (by the main process, once: a complete
        export there is used as it is; None: a temporary folder, for one process).
    engine_arguments: more `vllm.LLM` arguments (`gpu_memory_utilization`, `enable_sleep_mode`,
        `max_model_len`, `dtype`, ...); `ENGINE_ARGUMENTS` are fixed. The engine lives in this process
        (the weights reach it without a copy); under several processes each gets its own
        (`distributed_executor_backend="external_launcher"`) and samples its own share.
    """

    def __init__(self, checkpoint: str | os.PathLike, folder: str | os.PathLike | None = None, **engine_arguments):
        check_engine_arguments(engine_arguments, ENGINE_ARGUMENTS, "rollout_engine", "docs/scaling-out.md")
        from vllm import LLM

        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: `sync` hands it tensors
        import torch.distributed as dist

        several = dist.is_initialized() and dist.get_world_size() > 1
        defaults = {**ENGINE_DEFAULTS, "distributed_executor_backend": "external_launcher" if several else "uni"}
        self._temporary = tempfile.TemporaryDirectory(prefix="descore-rollouts-") if folder is None else None
        folder = Path(self._temporary.name if folder is None else folder)
        if not (folder / EXPORT_NAME).is_file() and (not several or dist.get_rank() == 0):
            export_for_vllm(checkpoint, folder)  # atomic: a complete export or none
        if several:
            dist.barrier()
        self.requests = ScoringRequests(folder)
        self.llm = LLM(model=str(folder), **{**defaults, **engine_arguments, **ENGINE_ARGUMENTS})
        self.sleeps = bool(engine_arguments.get("enable_sleep_mode"))
        self._wake()

    def _wake(self) -> None:
        if self.sleeps and self.llm.llm_engine.is_sleeping():
            self.llm.wake_up()

    def sleep(self) -> None:
        """Free the engine's memory for the update (with `enable_sleep_mode`; its weights move to the CPU)."""
        if self.sleeps:
            self.llm.sleep(level=1)

    @torch.no_grad()
    def sync(self, model: DeScoreModel) -> None:
        """Write the policy's current weights (`policy_weights`) into the engine and forget what it cached
        from the old ones (prefixes, vision encodings). Every process must call this."""
        weights = policy_weights(model)
        self._wake()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()

    @torch.no_grad()
    def sample(
        self, model: DeScoreModel, pairs: list[PreferencePair], config, seed: int, greedy: bool = False
    ) -> Rollouts:
        """`sample_rollouts`' rollouts with the CoTs sampled here: `group_size` per video at the rollout
        temperature and top-p, rollout `i` from `seed + i`; each video encoded once by `model` for the
        training passes. `greedy`: decode greedily instead (parity checks)."""
        self._wake()
        videos = pair_videos(model, pairs)
        inputs, features = encode_pairs(model, pairs, videos)
        prompts = [self.requests.prompt(video, pair.prompt) for video, pair in zip(videos, pairs * 2)]
        group, repeated = config.group_size, []
        parameters = []
        for row in range(len(prompts) * group):
            repeated.append(prompts[row // group])
            parameters.append(
                self.requests.cot_parameters(
                    config.max_new_tokens,
                    do_sample=not greedy,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    seed=seed + row,
                    repetition_penalty=1.0,
                    logprobs=0,
                )
            )
        outputs = [request.outputs[0] for request in self.llm.generate(repeated, parameters, use_tqdm=False)]
        generated, cot_length, sampler_logprobs = self.tokens_of(outputs, inputs["input_ids"].device)
        rollouts = assemble_rollouts(model, pairs, inputs, features, generated, cot_length, config)
        rollouts.sampler_logprobs = sampler_logprobs
        return rollouts

    def tokens_of(self, outputs, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The CoT tokens `(N, L)` as `generate_cots` gives them (a finished CoT's end-of-sequence token
        after it, padding after that), each CoT's length `(N,)`, and vLLM's log-prob of each token `(N, L)`."""
        rows, lengths, logprobs = [], [], []
        for output in outputs:
            tokens = list(output.token_ids)
            cot = self.requests.cot_ids(tokens)
            kept = tokens[: len(cot) + 1]  # up to and with the end-of-sequence token, where there is one
            rows.append(kept)
            lengths.append(len(cot))
            logprobs.append([entry[token].logprob for entry, token in zip(output.logprobs, kept)])
        width = max(len(row) for row in rows)
        pad = self.requests.processor.tokenizer.pad_token_id
        generated = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=device)
        sampled = torch.tensor([values + [0.0] * (width - len(values)) for values in logprobs], device=device)
        return generated, torch.tensor(lengths, device=device), sampled

    def close(self) -> None:
        """Stop the engine (and remove a temporary export); it cannot sample after this."""
        self.llm.llm_engine.engine_core.shutdown()
        if self._temporary is not None:
            self._temporary.cleanup()
