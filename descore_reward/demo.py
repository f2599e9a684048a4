"""`descore demo`: DeScore end to end, offline, on the CPU, in a few minutes.

1. writes a synthetic preference dataset of real MP4 files (a coloured shape that should match its
   prompt; losers show the wrong colour) with oracle CoTs;
2. builds a tiny random Qwen3-VL DeScore and measures held-out pair accuracy, with CoT and masked;
3. runs the stage-1 cold start (BT loss, random CoT masking) and measures again;
4. scores new videos think-then-score and fast, printing each CoT, sub-scores and reward.

A tiny random backbone learns to score but not to write: its generated CoTs stay gibberish.
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers

from .atomic import atomic_write_text
from .modeling import DeScoreModel
from .synthetic import LAYOUTS, Scene, make_dataset, render, write_mp4
from .tiny import build_tiny_backbone
from .training.cold_start import ColdStartConfig, train

MARKER = "scores.jsonl"
DEMO_COT_TOKENS = 24  # a tiny random writer: longer CoTs only cost time
# A short instruction of the demo's own (the `descore` answer format stays): a 2-layer model learns
# faster from a short prompt. `instruction_file` is how a user would give the authors' wording.
DEMO_INSTRUCTION = 'Judge how well this video follows the prompt "{prompt}". Reason, then answer.'

DEMO_SAMPLING = dict(fps=4.0, max_pixels_per_frame=64 * 64, max_total_pixels=64 * 64 * 16)
# Held out: two of the ten (shape, direction) layouts, so held-out prompts and videos are unseen.
HELD_OUT = [("circle", "up"), ("square", "left")]
TRAIN_LAYOUTS = [layout for layout in LAYOUTS if layout not in HELD_OUT]


def _accuracy_line(row: dict) -> str:
    return f"with CoT {row['accuracy_cot']:.2f}, CoT masked {row['accuracy_masked']:.2f}"


def run(out: Path, seed: int = 0) -> list[dict]:
    """Run the demo into `out` (empty, new, or a previous demo's folder). Returns the score rows."""
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out}: exists, is not empty and holds no earlier demo ({MARKER}); choose another --out")

    print("[1/4] writing a synthetic preference dataset (512 training pairs, 64 held out) as MP4 files")
    train_data = make_dataset(out / "data" / "train", 512, seed=seed, violations=("color",), layouts=TRAIN_LAYOUTS)
    eval_data = make_dataset(out / "data" / "held_out", 64, seed=seed + 1, violations=("color",), layouts=HELD_OUT)
    written = len(list((out / "data").rglob("*.mp4")))
    (shape_1, motion_1), (shape_2, motion_2) = HELD_OUT
    print(f"      {written} MP4 files; the held-out pairs' prompts and videos (a {shape_1} moving {motion_1},")
    print(f"      a {shape_2} moving {motion_2}, in any colour) never occur in training")

    print("[2/4] building a tiny random Qwen3-VL backbone (real classes, offline tokenizer)")
    build_tiny_backbone(out / "backbone", seed=seed, text=dict(hidden_size=64, intermediate_size=128))

    print("[3/4] stage 1: cold start with the Bradley-Terry loss and random CoT masking (full fine-tune)")
    atomic_write_text(out / "instruction.txt", DEMO_INSTRUCTION)
    config = ColdStartConfig(
        instruction_file=str(out / "instruction.txt"),
        model=str(out / "backbone"),
        train_data=str(train_data),
        eval_data=str(eval_data),
        output_dir=str(out / "cold_start"),
        lora=False,
        adapt_vision=True,
        learning_rate=1e-3,
        p_mask=0.75,
        batch_size=16,
        micro_batch_size=16,
        epochs=4,
        eval_every=32,
        save_every=32,
        seed=seed,
        report_to="tensorboard",
        sampling=DEMO_SAMPLING,
    )
    state = train(config)
    before, after = state["evaluations"][0], state["evaluations"][-1]
    print(f"      held-out pair accuracy before: {_accuracy_line(before)}")
    print(f"      held-out pair accuracy after:  {_accuracy_line(after)}")
    print(f"      curves: {out / 'cold_start' / 'training_curves.png'}")

    model = DeScoreModel.from_pretrained(out / "cold_start" / "final")
    asked = Scene("red", "square", "right")
    shown = [asked, Scene("blue", "square", "right"), Scene("green", "circle", "still")]
    videos = [
        write_mp4(render(scene), out / "videos" / f"{scene.color}_{scene.shape}_{scene.direction}.mp4")
        for scene in shown
    ]
    print(f"[4/4] scoring {len(videos)} new videos for the prompt {asked.prompt()!r}")
    thought = model.score(videos, asked.prompt(), think=True, max_new_tokens=DEMO_COT_TOKENS)
    fast = model.score(videos, asked.prompt(), think=False)
    rows = []
    for video, with_cot, without_cot in zip(videos, thought, fast, strict=True):
        print(f"\n  {video.name}")
        print(f"    generated CoT (a tiny random writer): {with_cot.cot[:60]!r}")
        print(f"    sub-scores: {with_cot.scores}")
        print(f"    reward think-then-score: {with_cot.reward:+.3f}   fast (no CoT): {without_cot.reward:+.3f}")
        rows.append({**with_cot.to_dict(), "video": str(video), "reward_fast": without_cot.reward})
    atomic_write_text(out / MARKER, "".join(json.dumps(row) + "\n" for row in rows))
    print(f"\nwrote {out / MARKER}. Score your own files with:")
    print(
        f"  descore score {videos[0]} --prompt {asked.prompt()!r} --model {out / 'cold_start' / 'final'} "
        f"--max-new-tokens {DEMO_COT_TOKENS}"
    )
    return rows
