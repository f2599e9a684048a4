"""Per-process memory of a full fine-tune's parameters and AdamW state: FSDP2 over N CPU processes against
one unsharded process, as the trainers shard (`descore_reward.training.sharding`), measured in one run.

    python benchmarks/bench_sharding.py [--processes 2]

The parent measures one unsharded process, then starts N processes (gloo) that shard the same model,
take one AdamW step and report their local bytes. Random Qwen3-VL (text hidden 512 x 8 layers, vision
128 x 2), the language model and head trained fully, float32.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from descore_reward.modeling import DeScoreConfig, DeScoreModel
from descore_reward.tiny import CPU_BENCHMARK_TEXT, build_tiny_backbone
from descore_reward.video import VideoSampling

VISION = dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, deepstack_visual_indexes=[0, 1])
SAMPLING = VideoSampling(fps=4.0, max_pixels_per_frame=64 * 64, max_total_pixels=64 * 64 * 16)


def local_bytes(tensor: torch.Tensor) -> int:
    from descore_reward.training.sharding import is_sharded

    local = tensor.to_local() if is_sharded(tensor) else tensor
    return local.numel() * local.element_size()


def one_step(backbone: Path, shard: bool) -> dict:
    """Build the model, shard it if asked, take one AdamW step; this process's bytes of each kind."""
    from descore_reward.training.sharding import FSDP2
    from descore_reward.training.sharding import shard as shard_model

    model = DeScoreModel.from_backbone(backbone, DeScoreConfig(sampling=SAMPLING), seed=0)
    model.train_backbone_fully(vision=False, lm_head=False)
    if shard:
        shard_model(model, FSDP2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    video = torch.rand(8, 48, 64, 3, generator=torch.Generator().manual_seed(0))
    model([video], ["a red square moves right"], ["The square moves right."]).sum().backward()
    optimizer.step()
    trained = [p for p in model.parameters() if p.requires_grad]
    state = [value for values in optimizer.state.values() for value in values.values() if value.dim() > 0]
    return {
        "parameters": sum(local_bytes(p) for p in model.parameters()),
        "trained_parameters": sum(local_bytes(p) for p in trained),
        "optimizer_state": sum(local_bytes(value) for value in state),
    }


def worker(backbone: Path, out: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    measured = one_step(backbone, shard=True)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, measured)
    if dist.get_rank() == 0:
        out.write_text(json.dumps(gathered))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("BACKBONE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(Path(args.worker[0]), Path(args.worker[1]))
    with tempfile.TemporaryDirectory() as root:
        backbone, out = Path(root) / "backbone", Path(root) / "sharded.json"
        build_tiny_backbone(backbone, text=CPU_BENCHMARK_TEXT, vision=VISION)
        whole = one_step(backbone, shard=False)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
        command += [str(args.processes), __file__, "--worker", str(backbone), str(out)]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
        ranks = json.loads(out.read_text())
    print(f"full fine-tune, float32, one unsharded process against FSDP2 over {args.processes} (per process, MB):")
    for kind in ("parameters", "trained_parameters", "optimizer_state"):
        largest = max(rank[kind] for rank in ranks)
        print(
            f"  {kind:<19} unsharded {whole[kind] / 2**20:8.1f}   sharded {largest / 2**20:8.1f}   "
            f"ratio {largest / whole[kind]:.3f}  (ideal {1 / args.processes:.3f})"
        )


if __name__ == "__main__":
    main()
