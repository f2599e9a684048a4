"""Per-process memory of a full fine-tune's parameters and AdamW state: FSDP2 and DeepSpeed ZeRO-3 over N CPU
processes against one unsharded process, as the trainers shard (`descore_reward.training.sharding`), measured
in one run.

    python benchmarks/bench_sharding.py [--processes 2]

The parent measures one unsharded process, then starts N processes (gloo) per sharding that shard the same
model, take one AdamW step and report their local bytes (ZeRO-3 also keeps a float32 master copy of its
partitions, counted on its own line). Random Qwen3-VL (text hidden 512 x 8 layers, vision
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
    from descore_reward.training.sharding import is_partitioned, is_sharded

    local = tensor.ds_tensor if is_partitioned(tensor) else tensor.to_local() if is_sharded(tensor) else tensor
    return local.numel() * local.element_size()


def one_step(backbone: Path, sharding: str) -> dict:
    """Build the model, shard it as asked, take one AdamW step; this process's bytes of each kind."""
    from descore_reward.training.sharding import ZERO3, shard, zero3_backward, zero3_engine

    model = DeScoreModel.from_backbone(backbone, DeScoreConfig(sampling=SAMPLING), seed=0)
    model.train_backbone_fully(vision=False, lm_head=False)
    shard(model, sharding)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    engine = zero3_engine(model, optimizer, max_grad_norm=1.0) if sharding == ZERO3 else None
    video = torch.rand(8, 48, 64, 3, generator=torch.Generator().manual_seed(0))
    loss = model([video], ["a red square moves right"], ["The square moves right."]).sum()
    if engine is not None:
        zero3_backward(engine, loss)
        engine.step()
    else:
        loss.backward()
        optimizer.step()
    trained = [p for p in model.parameters() if p.requires_grad]
    state = [value for values in optimizer.state.values() for value in values.values() if value.dim() > 0]
    masters = engine.optimizer.fp32_partitioned_groups_flat if engine is not None else []
    return {
        "parameters": sum(local_bytes(p) for p in model.parameters()),
        "trained_parameters": sum(local_bytes(p) for p in trained),
        "optimizer_state": sum(local_bytes(value) for value in state),
        "float32_master_copy": sum(local_bytes(master) for master in masters),
    }


def worker(backbone: Path, sharding: str, out: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    measured = one_step(backbone, sharding)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, measured)
    if dist.get_rank() == 0:
        out.write_text(json.dumps(gathered))
    dist.destroy_process_group()


def main() -> None:
    from descore_reward.training.sharding import DATA_PARALLEL, FSDP2, ZERO3

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", nargs=3, metavar=("BACKBONE", "SHARDING", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(Path(args.worker[0]), args.worker[1], Path(args.worker[2]))
    with tempfile.TemporaryDirectory() as root:
        backbone = Path(root) / "backbone"
        build_tiny_backbone(backbone, text=CPU_BENCHMARK_TEXT, vision=VISION)
        whole = one_step(backbone, DATA_PARALLEL)
        ranks = {}
        for sharding in (FSDP2, ZERO3):
            out = Path(root) / f"{sharding}.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
            command += [str(args.processes), __file__, "--worker", str(backbone), sharding, str(out)]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            completed = subprocess.run(command, env=env, capture_output=True, text=True)
            if completed.returncode:
                sys.exit(f"the {sharding} workers failed:\n{completed.stderr[-4000:]}")
            ranks[sharding] = json.loads(out.read_text())
    print(f"full fine-tune, float32, one unsharded process against {args.processes} sharded ones (per process, MB):")
    for sharding, measured in ranks.items():
        print(f"{sharding}:")
        for kind in ("parameters", "trained_parameters", "optimizer_state", "float32_master_copy"):
            largest = max(rank[kind] for rank in measured)
            if not whole[kind]:
                if largest:
                    print(f"  {kind:<19} unsharded      0.0   sharded {largest / 2**20:8.1f}   (a copy of its own)")
                continue
            print(
                f"  {kind:<19} unsharded {whole[kind] / 2**20:8.1f}   sharded {largest / 2**20:8.1f}   "
                f"ratio {largest / whole[kind]:.3f}  (ideal {1 / args.processes:.3f})"
            )


if __name__ == "__main__":
    main()
