"""Run the four trainers that split work across processes (cold start, stage-2 RL, Flow-DPO, Wan
GRPO; the DeScore stages also as full fine-tunes) on tiny models and save each one's trainable
parameters, whole, per process. `tests/test_multiprocess.py` runs it under `torchrun --nproc_per_node 2`
with `ACCELERATE_USE_CPU=1` (accelerate's multi-CPU mode, gloo; FSDP2 and ZeRO-3 by their launcher
variables) and calls
`train_all` in its own process for the one-process baseline.

    python tests/multiprocess_trainers.py SPEC.json
"""

import json
import os
import sys

import torch

from descore_reward.training.sharding import full_tensor


def brightness(videos, prompts, metadata=None):
    return videos.float().mean(dim=(1, 2, 3, 4)).numpy(), {}


def trainable(module) -> dict[str, torch.Tensor]:
    """The trainable parameters, whole (sharded ones gathered: every process calls this)."""
    return {n: full_tensor(p).detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def train_all(spec: dict) -> dict[str, dict[str, torch.Tensor]]:
    """`spec` holds the keyword arguments of ColdStartConfig ("cold_start"), RLConfig ("rl"),
    FlowDPOConfig ("flow_dpo") and WanGRPOConfig ("grpo"); returns each run's trainable weights."""
    from diffusers import WanPipeline

    from descore_reward.modeling import DeScoreModel
    from descore_reward.training import cold_start, distributed, rl
    from descore_reward.training.run import TrainingRun
    from descore_reward.wan import flow_dpo, grpo

    if os.environ.get("ACCELERATE_USE_DEEPSPEED"):
        from deepspeed.utils import safe_get_full_grad
    results = {}
    recorded = []
    FULL = [("cold_start_full", cold_start, cold_start.ColdStartConfig), ("rl_full", rl, rl.RLConfig)]

    def recording_average(accelerator, parameters, *args):
        """The trainers' gradient averaging, keeping the first step's (cold start's) averaged gradients,
        the weights they are applied to and the parameters, so that the step's update can be read."""
        average(accelerator, parameters, *args)
        if not recorded:  # gradients and weights whole: sharded ones gathered (every process is here)
            with_grad = [(str(i), p) for i, p in enumerate(parameters) if p.grad is not None]
            recorded.append(
                [(i, full_tensor(p.grad).clone(), full_tensor(p).detach().clone(), p) for i, p in with_grad]
            )

    def recording_step(run, optimizer):
        """Under ZeRO-3, whose engine reduces the gradients: the same record, read before the engine's step."""
        if run.engine is not None and not recorded:
            names = [name for group in optimizer.param_groups for name in group["param_names"]]
            parameters = dict(run.engine.module.named_parameters())
            grads = [(str(i), safe_get_full_grad(parameters[n]), parameters[n]) for i, n in enumerate(names)]
            recorded.append([(i, g.clone(), full_tensor(p).detach().clone(), p) for i, g, p in grads if g is not None])
        step(run, optimizer)

    average, step = distributed.average_gradients, TrainingRun.optimizer_step
    distributed.average_gradients, TrainingRun.optimizer_step = recording_average, recording_step
    for name, module, config in (
        ("cold_start", cold_start, cold_start.ColdStartConfig(**spec["cold_start"])),
        ("rl", rl, rl.RLConfig(**spec["rl"])),
        *[(name, module, kind(**spec[name])) for name, module, kind in FULL if name in spec],
    ):
        model = DeScoreModel.from_pretrained(config.model, is_trainable=True)
        state = module.train(config, model)  # trains `model` in place
        results[name] = trainable(model)
        results[f"{name}_history"], results[f"{name}_evaluations"] = state["history"], state["evaluations"]
    distributed.average_gradients, TrainingRun.optimizer_step = average, step
    results["cold_start_gradients"] = {i: grad for i, grad, _, _ in recorded[0]}
    results["cold_start_update"] = {i: full_tensor(p).detach() - before for i, _, before, p in recorded[0]}
    for name, config, train in (
        ("flow_dpo", flow_dpo.FlowDPOConfig(**spec["flow_dpo"]), lambda c, p: flow_dpo.train(c, model=p)),
        ("grpo", grpo.WanGRPOConfig(**spec["grpo"]), lambda c, p: grpo.train(c, p, brightness)),
    ):
        pipeline = WanPipeline.from_pretrained(config.pipeline)
        pipeline.set_progress_bar_config(disable=True)
        train(config, pipeline)
        results[name] = trainable(pipeline.transformer)
    for name in ("rl", "rl_full"):  # stopped after a step (as a kill would) and resumed from its checkpoint
        if spec.get("resume"):
            config = rl.RLConfig(**{**spec[name], "output_dir": spec[name]["output_dir"] + "_resumed"})
            rl.train(config, DeScoreModel.from_pretrained(config.model, is_trainable=True), stop_after=1)
            model = DeScoreModel.from_pretrained(config.model, is_trainable=True)
            rl.train(config, model)
            results[f"{name}_resumed"] = trainable(model)
    return results


if __name__ == "__main__":
    spec = json.loads(open(sys.argv[1]).read())
    results = train_all(spec)
    torch.save(results, os.path.join(spec["results"], f"rank{os.environ.get('RANK', '0')}.pt"))
