"""Fill a VBench cache with random weights of the real architectures, so that VBench 0.1.5 runs offline
in CI (REFERENCE.md section 10). Runs in the VBench environment, not the library's:

    VBENCH_CACHE_DIR=/tmp/vbench-cache .venv-vbench/bin/python tests/vbench/random_cache.py

subject consistency: a `hubconf.py` of this project's that builds timm's ViT-B/16 (DINO's architecture
and parameter names) and crops inputs to a multiple of 16, as DINO's patch embedding floors them;
background and aesthetic quality: OpenAI CLIP ViT-B/32 and ViT-L/14 as VBench loads them, TorchScript
archives (with a one-layer text tower: only the image tower is used), and the LAION head, a
`Linear(768, 1)`; imaging quality: MUSIQ; dynamic degree: VBench's RAFT.
"""

import os
import textwrap
from pathlib import Path

import torch

HUBCONF = '''
"""DINO ViT-B/16 entry point for torch.hub (source="local"), built with timm: random test weights."""
import timm
import torch

dependencies = ["torch", "timm"]


class CroppedViT(torch.nn.Module):
    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, images):
        height, width = images.shape[-2] // 16 * 16, images.shape[-1] // 16 * 16
        return self.vit(images[..., :height, :width])


def dino_vitb16(pretrained=True, path=None, **kwargs):
    vit = timm.create_model("vit_base_patch16_224", num_classes=0, dynamic_img_size=True)
    if pretrained and path:
        vit.load_state_dict(torch.load(path, map_location="cpu"))
    return CroppedViT(vit).eval()
'''


def main() -> None:
    import clip.model
    import timm
    from easydict import EasyDict
    from pyiqa.archs.musiq_arch import MUSIQ
    from vbench.third_party.RAFT.core.raft import RAFT

    cache = Path(os.environ["VBENCH_CACHE_DIR"])
    torch.manual_seed(0)

    dino = cache / "dino_model"
    (dino / "facebookresearch_dino_main").mkdir(parents=True, exist_ok=True)
    (dino / "facebookresearch_dino_main" / "hubconf.py").write_text(textwrap.dedent(HUBCONF).lstrip())
    vit = timm.create_model("vit_base_patch16_224", num_classes=0, dynamic_img_size=True)
    torch.save(vit.state_dict(), dino / "dino_vitbase16_pretrain.pth")

    clip_dir = cache / "clip_model"
    clip_dir.mkdir(parents=True, exist_ok=True)
    model = clip.model.CLIP(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=32,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=1,
    ).eval()
    image, text = torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)
    torch.jit.save(torch.jit.trace(model, (image, text)), clip_dir / "ViT-B-32.pt")
    model = clip.model.CLIP(
        embed_dim=768,
        image_resolution=224,
        vision_layers=24,
        vision_width=1024,
        vision_patch_size=14,
        context_length=77,
        vocab_size=49408,
        transformer_width=768,
        transformer_heads=12,
        transformer_layers=1,
    ).eval()
    torch.jit.save(torch.jit.trace(model, (image, text)).half(), clip_dir / "ViT-L-14.pt")  # as released: fp16
    head = cache / "aesthetic_model" / "emb_reader"
    head.mkdir(parents=True, exist_ok=True)
    torch.save(torch.nn.Linear(768, 1).state_dict(), head / "sa_0_4_vit_l_14_linear.pth")

    musiq = cache / "pyiqa_model"
    musiq.mkdir(parents=True, exist_ok=True)
    torch.save(MUSIQ(pretrained=False).state_dict(), musiq / "musiq_spaq_ckpt-358bb6af.pth")

    raft = cache / "raft_model" / "models"
    raft.mkdir(parents=True, exist_ok=True)
    network = RAFT(EasyDict(small=False, mixed_precision=False, alternate_corr=False))
    torch.save(network.state_dict(), raft / "raft-things.pth")
    print(f"random VBench weights written under {cache}")


if __name__ == "__main__":
    main()
