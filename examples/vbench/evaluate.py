"""Score a folder of generated videos on the paper's five VBench dimensions with VBench 0.1.5 itself.

VBench pins transformers 4.33 and numpy < 2, so it runs in its own Python 3.11 environment, not the
library's (this script imports only VBench and the standard library):

    python3.11 -m venv .venv-vbench
    .venv-vbench/bin/pip install -r examples/vbench/requirements-vbench.txt
    .venv-vbench/bin/python examples/vbench/evaluate.py --videos runs/vbench/grpo --name grpo --out runs/vbench/results

The videos are VBench's standard-mode files `{prompt}-{i}.mp4` (`examples/vbench/generate.py` writes
them); the results go to `{out}/{name}_eval_results.json`, which `examples/vbench/compare.ipynb` reads.

Weights are read from VBench's cache, `$VBENCH_CACHE_DIR` (default `~/.cache/vbench`); VBench fetches
missing ones with wget and git, so a node without internet access needs the cache filled elsewhere
first (run this once on a machine with access, or fetch the files from the URLs in `vbench/utils.py`)
and copied over. The files, for the five dimensions:

    dino_model/facebookresearch_dino_main/      the DINO repository (its hubconf.py)   subject_consistency
    dino_model/dino_vitbase16_pretrain.pth      DINO ViT-B/16                          subject_consistency
    clip_model/ViT-B-32.pt                      OpenAI CLIP ViT-B/32 (TorchScript)     background_consistency
    clip_model/ViT-L-14.pt                      OpenAI CLIP ViT-L/14 (TorchScript)     aesthetic_quality
    aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth   LAION aesthetic head       aesthetic_quality
    pyiqa_model/musiq_spaq_ckpt-358bb6af.pth    MUSIQ, SPAQ weights                    imaging_quality
    raft_model/models/raft-things.pth           RAFT, Things weights                   dynamic_degree

`--offline` checks that every file the chosen dimensions need is there before any model loads.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

# descore_reward.vbench.results.VBENCH_DIMENSIONS, copied: this script runs in VBench's own environment,
# without the library (tests/test_vbench.py keeps the two equal).
VBENCH_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "aesthetic_quality",
    "imaging_quality",
    "dynamic_degree",
)
CACHE_FILES = {
    "subject_consistency": (
        "dino_model/facebookresearch_dino_main/hubconf.py",
        "dino_model/dino_vitbase16_pretrain.pth",
    ),
    "background_consistency": ("clip_model/ViT-B-32.pt",),
    "aesthetic_quality": ("clip_model/ViT-L-14.pt", "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth"),
    "imaging_quality": ("pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",),
    "dynamic_degree": ("raft_model/models/raft-things.pth",),
}


def cache_dir() -> Path:
    return Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True, help="folder of {prompt}-{i}.mp4 files")
    parser.add_argument("--name", required=True, help="run name: the results file is {out}/{name}_eval_results.json")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--dimensions", nargs="+", default=list(VBENCH_DIMENSIONS), choices=VBENCH_DIMENSIONS)
    parser.add_argument("--full-info", help="VBench_full_info.json (default: the installed vbench package's)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--offline", action="store_true", help="fail early if a cached weight file is missing")
    args = parser.parse_args()

    videos = Path(args.videos)
    names = sorted(p.name for p in videos.glob("*.mp4")) if videos.is_dir() else []
    if not names:
        parser.error(f"--videos {videos}: no .mp4 files there")
    misnamed = [n for n in names if not re.search(r"-\d+\.mp4$", n)]
    if misnamed:
        parser.error(f"--videos {videos}: {misnamed[0]} is not named {{prompt}}-{{i}}.mp4 (VBench's standard mode)")
    if args.offline:
        missing = [f for d in args.dimensions for f in CACHE_FILES[d] if not (cache_dir() / f).exists()]
        if missing:
            parser.error(f"--offline: missing from the VBench cache {cache_dir()}: {', '.join(missing)}")

    import torch
    import vbench
    from vbench import VBench

    full_info = Path(args.full_info or Path(vbench.__file__).parent / "VBench_full_info.json")
    if not full_info.is_file():
        parser.error(f"--full-info {full_info}: no such file")
    prompts = {
        entry["prompt_en"]
        for entry in json.loads(full_info.read_text())
        if set(entry["dimension"]) & set(args.dimensions)
    }
    found = {re.sub(r"-\d+\.mp4$", "", n) for n in names}
    if not found & prompts:
        parser.error(f"--videos {videos}: no file is named after a prompt of {full_info} for {args.dimensions}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bench = VBench(device, str(full_info), str(out))
    bench.evaluate(
        videos_path=str(videos), name=args.name, dimension_list=args.dimensions, local=True, mode="vbench_standard"
    )
    results = json.loads((out / f"{args.name}_eval_results.json").read_text())
    for dimension in args.dimensions:
        print(f"{dimension:<23} {results[dimension][0]:.4f}  ({len(results[dimension][1])} videos)")


if __name__ == "__main__":
    sys.exit(main())
