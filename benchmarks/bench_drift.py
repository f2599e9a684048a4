"""Reward drift in stage 2, measured on this library's trainer and a tiny random Qwen3-VL.

The paper's claim (section 3.2): GRPO changes the CoTs the policy writes, so a head trained on
stage-1 CoTs drifts; the BT term on the rollouts keeps it calibrated. Set-up, reproducible from a seed:

- Stage 1 (a supervised warm-up in this script, with the library's stage-2 tensor functions): the
  policy learns to write an informative free-text CoT ("The colour is right." / "The colour is
  wrong.") and, for 40% of its targets, the same sentence followed by the rubric's answer (JSON
  sub-scores), as an instruction-tuned VLM can write either; its greedy CoT is the free text. The
  head learns BT on the free-text CoTs only (stage 1 reads a teacher's free-text CoTs) and on the
  CoT-masked sequences (fast mode).
- Stage 2 (`training.rl.train`, the rubric's rule rewards): format and correct sub-scores pay, so
  GRPO pulls the greedy CoT from free text to the answer format, which the head never scored.

Arms: GRPO only; GRPO + BT; GRPO + BT on shuffled labels; GRPO + BT + masked BT. Prints held-out
think- and fast-mode pair accuracy at the start and the end of stage 2 (mean over seeds, standard
error over the pooled pairs), the greedy CoTs' answer-format rate, and draws both accuracies over
steps. The `likert5` rubric is used because its answer is 41 tokens with the tiny tokenizer (the
`descore` answer block is 98): generation is most of the cost on a CPU.

    python benchmarks/bench_drift.py [--seeds 3] [--steps 40] [--out drift-out]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from descore_reward.data import read_jsonl, write_jsonl
from descore_reward.demo import DEMO_SAMPLING
from descore_reward.losses import labelled_bradley_terry_loss
from descore_reward.modeling import DeScoreConfig, DeScoreModel
from descore_reward.plots import save_figure
from descore_reward.synthetic import make_dataset
from descore_reward.tiny import build_tiny_backbone
from descore_reward.training import rl
from descore_reward.training.rollouts import logprobs_and_rewards, masked_rewards, rollouts_from_texts
from descore_reward.video import VideoSampling

INSTRUCTION = 'Judge how well this video follows the prompt "{prompt}". Reason, then answer.'
ARMS = {
    "GRPO only": dict(bt_coefficient=0.0, masked_bt_coefficient=0.0),
    "GRPO + BT": dict(bt_coefficient=0.005, masked_bt_coefficient=0.0),
    "GRPO + BT, shuffled labels": dict(bt_coefficient=0.005, masked_bt_coefficient=0.0),
    "GRPO + BT + masked BT": dict(bt_coefficient=0.005, masked_bt_coefficient=0.005),
}


def free_text(scores: dict) -> str:
    """The stage-1 CoT: one sentence that says whether the colour matches the prompt."""
    return "The colour is right." if scores["object"] == 5 else "The colour is wrong."


def warm_up(model: DeScoreModel, pairs: list, steps: int, batch_pairs: int, seed: int) -> None:
    """Stage 1 of the experiment: SFT on the CoTs (40% in the answer format), BT on the
    free-text CoTs and BT on the CoT-masked sequences, full fine-tune of the language model."""
    rng = np.random.default_rng(seed)
    config = rl.RLConfig(model="-", train_data="-", output_dir="-", group_size=2)
    model.train()
    for name, parameter in model.backbone.named_parameters():
        parameter.requires_grad_("visual" not in name)
    optimizer = torch.optim.AdamW(model.optimizer_groups(1e-3), weight_decay=0.0)
    for step in range(steps):
        batch = [pairs[i] for i in rng.choice(len(pairs), size=batch_pairs, replace=False)]
        texts = []
        for truths in ([p.scores_a for p in batch], [p.scores_b for p in batch]):
            for truth in truths:  # rollout 0: free text; rollout 1: the answer format 80% of the time
                answer = model.rubric.format_answer(free_text(truth), truth)
                texts += [free_text(truth), answer if rng.random() < 0.8 else free_text(truth)]
        rollouts = rollouts_from_texts(model, batch, texts, config)
        logprobs, rewards = logprobs_and_rewards(model, rollouts)
        mask = rollouts.response_mask.float()
        sft = -(logprobs * mask).sum() / mask.sum()
        labels = torch.tensor([p.human for p in batch])
        free = rewards.view(2, len(batch), 2)[:, :, 0]  # (side, pair): the free-text rollouts
        masked = masked_rewards(model, rollouts, 2).view(2, len(batch))
        loss = (
            sft
            + labelled_bradley_terry_loss(free[0], free[1], labels)
            + labelled_bradley_terry_loss(masked[0], masked[1], labels)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            print(f"    warm-up step {step + 1}/{steps}: SFT {sft.item():.3f}, loss {loss.item():.3f}", flush=True)
    model.eval()


def writer_accuracy(model: DeScoreModel, pairs: list, max_new_tokens: int) -> tuple[float, float]:
    """How often the greedy CoTs order a decided held-out pair right (one says "right", the other
    "wrong", as the label has it), and the share of greedy CoTs in the answer format."""
    videos = [p.video_a for p in pairs] + [p.video_b for p in pairs]
    results = model.score(videos, [p.prompt for p in pairs] * 2, max_new_tokens=max_new_tokens, batch_size=32)
    says = np.array([("right" in r.cot) - ("wrong" in r.cot) for r in results], dtype=float)
    order = np.sign(says[: len(pairs)] - says[len(pairs) :])
    labels = np.array([p.human for p in pairs])
    decided = labels != 0
    return float((order[decided] == labels[decided]).mean()), float(
        np.mean([model.rubric.parse(r.cot).well_formed for r in results])
    )


def run_seed(out: Path, seed: int, args) -> dict:
    """One seed: data, backbone, warm-up, then every arm. Returns {arm: stage-2 evaluations}."""
    folder = out / f"seed{seed}"
    train_data = make_dataset(folder / "data", args.train_pairs, seed=seed, violations=("color",), rubric="likert5")
    eval_data = make_dataset(
        folder / "data", args.eval_pairs, seed=10_000 + seed, violations=("color",), rubric="likert5", name="eval.jsonl"
    )
    shuffled = folder / "data" / "shuffled.jsonl"
    pairs = read_jsonl(train_data)
    permutation = np.random.default_rng(seed).permutation(len(pairs))
    write_jsonl([dataclasses.replace(p, label=pairs[j].label) for p, j in zip(pairs, permutation)], shuffled)

    stage1 = folder / "stage1"
    if not (stage1 / "descore_config.json").exists():
        build_tiny_backbone(folder / "backbone", seed=seed, text=dict(hidden_size=64, intermediate_size=128))
        config = DeScoreConfig(
            rubric="likert5", instruction_template=INSTRUCTION, sampling=VideoSampling(**DEMO_SAMPLING)
        )
        model = DeScoreModel.from_backbone(folder / "backbone", config, seed=seed)
        started = time.perf_counter()
        warm_up(model, pairs, args.warm_up_steps, 16, seed)
        print(f"    warm-up took {time.perf_counter() - started:.0f} s")
        model.save_pretrained(stage1, include_backbone=True)
    model = DeScoreModel.from_pretrained(stage1)
    writer, answer_rate = writer_accuracy(model, read_jsonl(eval_data), args.max_new_tokens)
    print(f"  seed {seed}: stage-1 greedy CoTs order {writer:.3f} of held-out pairs right, {answer_rate:.2f} answer")

    results = {"writer_accuracy": writer, "arms": {}}
    for arm, coefficients in ARMS.items():
        started = time.perf_counter()
        config = rl.RLConfig(
            model=str(stage1),
            train_data=str(shuffled if "shuffled" in arm else train_data),
            output_dir=str(folder / arm.replace(" ", "_").replace(",", "").replace("+", "plus")),
            group_size=4,
            pairs_per_step=8,
            steps=args.steps,
            max_new_tokens=args.max_new_tokens,
            learning_rate=args.learning_rate,
            head_learning_rate=args.head_learning_rate,
            lora_rank=16,
            length_weight=0.0,  # format and correct sub-scores only: the length term would pay long gibberish
            eval_data=str(eval_data),
            eval_every=args.eval_every,
            eval_batch_size=32,
            save_every=args.steps,
            seed=seed,
            report_to=None,
            **coefficients,
        )
        state = rl.train(config)
        results["arms"][arm] = state["evaluations"]
        first, last = state["evaluations"][0], state["evaluations"][-1]
        print(
            f"  seed {seed}, {arm}: think {first['think_accuracy']:.3f} -> {last['think_accuracy']:.3f}, "
            f"fast {first['fast_accuracy']:.3f} -> {last['fast_accuracy']:.3f}, answer format "
            f"{first['think_format_rate']:.2f} -> {last['think_format_rate']:.2f} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return results


def summarise(runs: list[dict], decided_pairs: int) -> str:
    """The table: per arm, mean over seeds at stage 2's start and end, and the pooled standard error."""
    seeds = len(runs)
    lines = [
        f"{seeds} seeds x {decided_pairs} decided held-out pairs; +- is the standard error of the end figure",
        "",
        "| arm | think: start -> end | fast: start -> end | answer format: start -> end |",
        "|---|---|---|---|",
    ]
    for arm in ARMS:
        cells = []
        for metric in ("think_accuracy", "fast_accuracy", "think_format_rate"):
            start = np.mean([run["arms"][arm][0][metric] for run in runs])
            end = np.mean([run["arms"][arm][-1][metric] for run in runs])
            error = math.sqrt(end * (1 - end) / (seeds * decided_pairs))
            cells.append(f"{start:.3f} -> **{end:.3f}** +- {error:.3f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    """Think- and fast-mode held-out accuracy over stage-2 steps, mean over seeds, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    metrics = ("think_accuracy", "fast_accuracy", "think_format_rate")
    titles = ("think mode (greedy CoT)", "fast mode (CoT masked)", "greedy CoTs in the answer format")
    for axis, metric, title in zip(axes, metrics, titles):
        for arm in ARMS:
            steps = [row["step"] for row in runs[0]["arms"][arm]]
            values = np.mean([[row[metric] for row in run["arms"][arm]] for run in runs], axis=0)
            axis.plot(steps, values, marker=".", label=arm)
        axis.set(xlabel="stage-2 step", title=title)
    axes[0].set_ylabel("held-out pair accuracy")
    axes[0].legend(fontsize=8)
    figure.suptitle("reward drift in stage 2 (tiny Qwen3-VL, mean over seeds)")
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--train-pairs", type=int, default=256)
    parser.add_argument("--eval-pairs", type=int, default=150)
    parser.add_argument("--warm-up-steps", type=int, default=300)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--head-learning-rate", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("drift-out"))
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(2)
    runs = [run_seed(args.out, seed, args) for seed in range(args.seeds)]
    decided = sum(p.human != 0 for p in read_jsonl(args.out / "seed0" / "data" / "eval.jsonl"))
    table = summarise(runs, decided)
    print("\n" + table)
    (args.out / "results.json").write_text(json.dumps(runs, indent=1))
    (args.out / "table.md").write_text(table + "\n")
    plot(runs, args.out / "drift.png")
    print(f"\nwrote {args.out / 'table.md'} and {args.out / 'drift.png'}")


if __name__ == "__main__":
    main()
