"""Tiny random Qwen3-VL backbones, built offline, for the demo, the tests and the benchmarks.

Everything here is the real thing at toy size: a `Qwen3VLForConditionalGeneration` built from a
config, a byte-level BPE tokenizer trained on a few sentences and wrapped in `Qwen2Tokenizer`,
the real `Qwen3VLProcessor` with the real image and video processors, and a Qwen-style chat
template. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from .rubrics import LIKERT5_DIMENSIONS, likert5_instruction

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
]

# The structure of Qwen3-VL's own template, for user turns holding text and videos.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for part in message.content %}"
    "{%- if part.type == 'video' %}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part.type == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part.type == 'text' %}{{- part.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = [
    likert5_instruction("a red circle moves to the right on a white background"),
    "The object matches the prompt. The motion is smooth and the camera stays still.",
    '{"object": 5, "dynamics": 4, "environment": 3, "style": 2, "camera movement": 1}',
    "a blue square stays still. a green triangle moves left, up, down. 0123456789",
    " ".join(LIKERT5_DIMENSIONS),
]

# Shapes of the published Qwen3-VL-8B text and vision towers (config.json of Qwen/Qwen3-VL-8B-Instruct).
QWEN3_VL_8B_TEXT = dict(
    vocab_size=151936,
    hidden_size=4096,
    intermediate_size=12288,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    mrope_section=[24, 20, 20],
)
# A text tower big enough for compute to dominate on the CPU (hidden 512 x 8 layers): the benchmarks' size.
CPU_BENCHMARK_TEXT = dict(
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=64,
    mrope_section=[12, 10, 10],
)
# The smallest text tower vLLM's CPU attention runs (head sizes 32 and up): for the vLLM engine's tests.
VLLM_TINY_TEXT = dict(
    hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32, mrope_section=[6, 5, 5]
)
QWEN3_VL_8B_VISION = dict(
    depth=27,
    hidden_size=1152,
    intermediate_size=4304,
    num_heads=16,
    out_hidden_size=4096,
    deepstack_visual_indexes=[8, 16, 24],
)


def build_tokenizer(vocab_size: int = 512) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with Qwen's special tokens, trained offline on a few sentences."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]  # {"vocab": {token: id}, "merges": [[left, right], ...]}
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(merge) for merge in trained["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer: Qwen2Tokenizer | None = None) -> Qwen3VLProcessor:
    """The real Qwen3-VL processor around the tiny tokenizer (patch 16, merge 2, temporal patch 2)."""
    tokenizer = tokenizer or build_tokenizer()
    pixels = {"shortest_edge": 32 * 32, "longest_edge": 32 * 32 * 64}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=pixels),
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer: Qwen2Tokenizer, text: dict | None = None, vision: dict | None = None) -> Qwen3VLConfig:
    """A Qwen3-VL config whose special-token ids match `tokenizer`; `text`/`vision` override sizes."""
    text_config = dict(
        vocab_size=len(tokenizer) + 8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        },
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    )
    vision_config = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=32,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0, 1],
    )
    text_config.update(text or {})
    if "mrope_section" in text_config:
        text_config["rope_parameters"]["mrope_section"] = text_config.pop("mrope_section")
    vision_config.update(vision or {})
    vision_config["out_hidden_size"] = text_config["hidden_size"]
    ids = tokenizer.convert_tokens_to_ids
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=text_config["tie_word_embeddings"],
    )


def build_tiny_backbone(
    path: str | Path | None = None, seed: int = 0, text: dict | None = None, vision: dict | None = None
) -> tuple[Qwen3VLForConditionalGeneration, Qwen3VLProcessor]:
    """A random Qwen3-VL and its processor; saved under `path` (loadable by `from_pretrained`) if given."""
    processor = build_processor()
    config = build_config(processor.tokenizer, text, vision)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    if path is not None:
        model.save_pretrained(path)
        processor.save_pretrained(path)
    return model, processor


def build_tiny_wan_pipeline(path: str | Path | None = None, seed: int = 0):
    """A random `WanPipeline` of the real diffusers classes at toy size (9 frames of 32x32 on the CPU in
    well under a second): `WanTransformer3DModel`, `AutoencoderKLWan`, a small UMT5 encoder, a
    word-level tokenizer and `FlowMatchEulerDiscreteScheduler`. Saved under `path` if given."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from tokenizers import models as token_models
    from tokenizers import pre_tokenizers as token_pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    words = sorted({w for line in _CORPUS for w in line.lower().replace(",", " ").split()} | set(LIKERT5_DIMENSIONS))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    word_level = Tokenizer(token_models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = token_pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(vocab),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    ).eval()
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    # At these widths diffusers' default init lets the conv biases drown the signal within a few layers, so
    # the decoded video would hardly depend on the latents (a latent shift of 1 moved the mean brightness by
    # 3e-5). Unit-gain weights and zero biases keep the decoder a function of its input, as a trained one is.
    for module in vae.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            torch.nn.init.zeros_(module.bias)
    pipeline = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipeline.set_progress_bar_config(disable=True)
    if path is not None:
        pipeline.save_pretrained(path)
    return pipeline
