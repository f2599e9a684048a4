"""A quick look at the paper's five VBench dimensions in the library's own environment: no VBench
install, so it runs beside training (a few prompts every N steps) and from `descore quick-look`.

The models, preprocessing and formulas are VBench 0.1.5's, read from VBench's own weight cache
(`$VBENCH_CACHE_DIR`, default `~/.cache/vbench`; layout in `examples/vbench/evaluate.py`), and the
results are written in VBench's format, so the comparison notebook reads either. Per dimension:

- subject_consistency: DINO ViT-B/16 (timm's ViT with DINO's weights) CLS features of every frame,
  resized to 224 on the short side; `mean_{i>=1} (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2`.
- background_consistency: the same with OpenAI CLIP ViT-B/32 image features (224 center crop).
- aesthetic_quality: the LAION linear head on CLIP ViT-L/14 image embeddings, / 10, mean over frames.
- imaging_quality: MUSIQ (SPAQ weights, through pyiqa) per frame, the longer side at most 512, mean.
- dynamic_degree: RAFT (torchvision's, with the original RAFT weights converted) between frames about
  8 fps apart, 20 iterations; a pair moves when the mean of its top 5% flow magnitudes exceeds
  `6 * min(H, W) / 256`, a video is dynamic when at least `round(4 * frames / 16)` pairs move.

Extras: `pip install "descore-reward[quick-look]"` (timm, open_clip) for four dimensions, and
`"descore-reward[musiq]"` for imaging quality: pyiqa, which is licensed for non-commercial use only.
Frames are decoded with decord for every dimension (VBench uses OpenCV for dynamic degree).
Known difference: for inputs that are not 224 px square, timm resamples DINO's position embeddings
with its own (antialiased bicubic) interpolation, not DINO's, so subject consistency can differ from
VBench's in the fourth decimal on such videos.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from ..errors import DeScoreInputError
from .results import VBENCH_DIMENSIONS, write_results

# Where VBench keeps each dimension's weights, under its cache folder.
CACHE_FILES = {
    "subject_consistency": ("dino_model/dino_vitbase16_pretrain.pth",),
    "background_consistency": ("clip_model/ViT-B-32.pt",),
    "aesthetic_quality": ("clip_model/ViT-L-14.pt", "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth"),
    "imaging_quality": ("pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",),
    "dynamic_degree": ("raft_model/models/raft-things.pth",),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def vbench_cache_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")


def read_frames(path: str | os.PathLike) -> tuple[torch.Tensor, float]:
    """Every frame of an MP4 as uint8 `(T, 3, H, W)`, and its frame rate."""
    import decord

    reader = decord.VideoReader(str(path), num_threads=1)
    frames = torch.from_numpy(reader.get_batch(range(len(reader))).asnumpy())
    return frames.permute(0, 3, 1, 2).contiguous(), float(reader.get_avg_fps())


def consistency(features: torch.Tensor) -> float:
    """VBench's consistency of per-frame features `(T, D)`: each frame against the previous and the
    first, cosines clipped at 0, averaged."""
    features = F.normalize(features.float(), dim=-1)
    previous = (features[1:] * features[:-1]).sum(-1).clamp(min=0)
    first = (features[1:] * features[:1]).sum(-1).clamp(min=0)
    return float(((previous + first) / 2).mean())


def top_flow_magnitude(flow: torch.Tensor) -> float:
    """The mean of the largest 5% of a flow field's `(2, H, W)` magnitudes, in pixels."""
    magnitude = flow.float().norm(dim=0).flatten()
    return float(magnitude.topk(int(magnitude.numel() * 0.05)).values.mean())


def is_dynamic(pair_magnitudes: Sequence[float], height: int, width: int, frames: int) -> bool:
    """VBench's decision: at least `round(4 * frames / 16)` frame pairs whose top flow magnitude exceeds
    `6 * min(height, width) / 256` (`frames`: the frames compared, about 8 per second)."""
    if not pair_magnitudes:
        return False
    threshold = 6.0 * min(height, width) / 256.0
    return sum(magnitude > threshold for magnitude in pair_magnitudes) >= round(4 * frames / 16)


def raft_from_original(state_dict: dict[str, torch.Tensor]):
    """torchvision's `raft_large` holding the weights of an original RAFT checkpoint (`raft-things.pth`,
    the layout of princeton-vl/RAFT and VBench)."""
    from torchvision.models.optical_flow import raft_large

    renames = [
        (r"^module\.", ""),
        (r"^fnet\.", "feature_encoder."),
        (r"^cnet\.", "context_encoder."),
        (r"_encoder\.conv1\.", "_encoder.convnormrelu.0."),
        (r"_encoder\.norm1\.", "_encoder.convnormrelu.1."),
        (r"_encoder\.conv2\.", "_encoder.conv."),
        (r"(layer\d\.\d)\.conv(\d)\.", r"\1.convnormrelu\2.0."),
        (r"(layer\d\.\d)\.norm(\d)\.", r"\1.convnormrelu\2.1."),
        (r"update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
        (r"update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
        (r"update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
        (r"update_block\.gru\.conv([zrq])(\d)\.", r"update_block.recurrent_block.convgru\2.conv\1."),
        (r"update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
        (r"update_block\.mask\.2\.", "mask_predictor.conv."),
    ]
    converted = {}
    for key, value in state_dict.items():
        if re.search(r"layer\d\.\d\.norm3\.", key):  # the same module as the block's downsample.1
            continue
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    model = raft_large(weights=None, progress=False)
    model.load_state_dict(converted)
    return model.eval()


class QuickLook:
    """The models of the chosen dimensions, loaded once from the VBench cache (`cache_dir`), on `device`.

    `score(frames, fps)` scores one video (uint8 `(T, 3, H, W)`), `score_file(path)` one MP4, and
    `evaluate(paths, results_path)` a list of them into a VBench results file.
    """

    def __init__(
        self,
        dimensions: Sequence[str] = VBENCH_DIMENSIONS,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ):
        unknown = sorted(set(dimensions) - set(VBENCH_DIMENSIONS))
        if unknown:
            raise DeScoreInputError(f"dimensions {unknown}: expected some of {list(VBENCH_DIMENSIONS)}")
        self.dimensions = list(dimensions)
        self.cache = vbench_cache_dir(cache_dir)
        missing = [name for d in self.dimensions for name in CACHE_FILES[d] if not (self.cache / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"VBench cache {self.cache}: missing {missing}; fill it as examples/vbench/evaluate.py describes"
            )
        self.device = torch.device(device)
        self.models = {d: getattr(self, f"_load_{d}")() for d in self.dimensions}

    # ------------------------------------------------------------------------------------------ models

    def _load_subject_consistency(self):
        import timm

        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True)
        vit.load_state_dict(torch.load(self.cache / CACHE_FILES["subject_consistency"][0], map_location="cpu"))
        return vit.eval().to(self.device)

    def _load_clip(self, name: str):
        from open_clip.openai import load_openai_model

        return load_openai_model(str(self.cache / name), precision="fp32", device=self.device).eval()

    def _load_background_consistency(self):
        return self._load_clip(CACHE_FILES["background_consistency"][0])

    def _load_aesthetic_quality(self):
        clip_path, head_path = CACHE_FILES["aesthetic_quality"]
        head = torch.nn.Linear(768, 1)
        head.load_state_dict(torch.load(self.cache / head_path, map_location="cpu"))
        return self._load_clip(clip_path), head.eval().to(self.device)

    def _load_imaging_quality(self):
        try:
            from pyiqa.archs.musiq_arch import MUSIQ
        except ImportError:
            raise ImportError(
                'imaging_quality needs MUSIQ from pyiqa (non-commercial licence): pip install "descore-reward[musiq]"'
            ) from None
        model = MUSIQ(pretrained_model_path=str(self.cache / CACHE_FILES["imaging_quality"][0]))
        return model.eval().to(self.device)

    def _load_dynamic_degree(self):
        weights = torch.load(self.cache / CACHE_FILES["dynamic_degree"][0], map_location="cpu")
        return raft_from_original(weights).to(self.device)

    # ----------------------------------------------------------------------------------------- scoring

    @torch.no_grad()
    def score(self, frames: torch.Tensor, fps: float) -> dict[str, float]:
        """The chosen dimensions of one video, uint8 `(T, 3, H, W)` at `fps` (dynamic degree: 1.0 or 0.0)."""
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3 or len(frames) < 2:
            raise DeScoreInputError(
                f"frames: expected uint8 (T >= 2, 3, H, W), got {frames.dtype} {tuple(frames.shape)}"
            )
        return {d: float(getattr(self, f"_{d}")(frames, fps)) for d in self.dimensions}

    def score_file(self, path: str | os.PathLike) -> dict[str, float]:
        return self.score(*read_frames(path))

    def evaluate(self, paths: Sequence[str | os.PathLike], results_path: str | os.PathLike | None = None) -> dict:
        """Per-video results `{dimension: {path: value}}` of `paths`, also written as a VBench results
        file at `results_path` when given."""
        results = {d: {} for d in self.dimensions}
        for path in tqdm(paths, desc="quick look", unit="video"):
            for dimension, value in self.score_file(path).items():
                results[dimension][str(path)] = value
        if results_path is not None:
            write_results(results_path, results)
        return results

    def _subject_consistency(self, frames: torch.Tensor, fps: float) -> float:
        images = TF.resize(frames, 224, antialias=False)
        images = TF.normalize(images.float().div(255), IMAGENET_MEAN, IMAGENET_STD)
        height, width = images.shape[-2] // 16 * 16, images.shape[-1] // 16 * 16  # DINO floors to whole patches
        model = self.models["subject_consistency"]
        return consistency(torch.cat([model(image[None, :, :height, :width].to(self.device)) for image in images]))

    def _clip_images(self, frames: torch.Tensor) -> torch.Tensor:
        images = TF.center_crop(TF.resize(frames, 224, InterpolationMode.BICUBIC, antialias=False), 224)
        return TF.normalize(images.float().div(255), CLIP_MEAN, CLIP_STD).to(self.device)

    def _background_consistency(self, frames: torch.Tensor, fps: float) -> float:
        return consistency(self.models["background_consistency"].encode_image(self._clip_images(frames)))

    def _aesthetic_quality(self, frames: torch.Tensor, fps: float) -> float:
        clip, head = self.models["aesthetic_quality"]
        scores = [
            head(F.normalize(clip.encode_image(self._clip_images(frames[i : i + 32])).float(), dim=-1)).squeeze(-1)
            for i in range(0, len(frames), 32)
        ]
        return float((torch.cat(scores) / 10).mean())

    def _imaging_quality(self, frames: torch.Tensor, fps: float) -> float:
        height, width = frames.shape[-2:]
        if max(height, width) > 512:
            scale = 512.0 / max(height, width)
            frames = TF.resize(frames, [int(scale * height), int(scale * width)], antialias=False)
        model = self.models["imaging_quality"]
        scores = [float(model(image[None].float().div(255).to(self.device))) for image in frames]
        return sum(scores) / len(scores) / 100.0

    @torch.no_grad()
    def motion_magnitudes(self, frames: torch.Tensor, fps: float) -> list[float]:
        """The top flow magnitude of every pair of consecutive frames about 8 fps apart."""
        frames = frames[:: max(1, round(fps / 8))]
        height, width = frames.shape[-2:]
        pad_h, pad_w = (8 - height % 8) % 8, (8 - width % 8) % 8
        padding = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]
        images = F.pad(frames.float(), padding, mode="replicate").div(255).mul(2).sub(1).to(self.device)
        model = self.models["dynamic_degree"]
        magnitudes = [
            top_flow_magnitude(model(images[i : i + 1], images[i + 1 : i + 2], num_flow_updates=20)[-1][0])
            for i in range(len(images) - 1)
        ]
        return magnitudes

    def _dynamic_degree(self, frames: torch.Tensor, fps: float) -> float:
        magnitudes = self.motion_magnitudes(frames, fps)  # one per pair of the len(magnitudes) + 1 frames compared
        return float(is_dynamic(magnitudes, frames.shape[-2], frames.shape[-1], len(magnitudes) + 1))
