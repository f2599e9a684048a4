"""The `descore` command line: `descore demo`, `descore score`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_score_command(commands) -> None:
    parser = commands.add_parser("score", help="score videos think-then-score (or fast, --no-think)")
    parser.add_argument("videos", nargs="+", help="video files")
    parser.add_argument("--prompt", required=True, help="the text prompt the videos were generated from")
    parser.add_argument("--model", required=True, help="a DeScore checkpoint directory (save_pretrained)")
    parser.add_argument("--no-think", action="store_true", help="score without generating a CoT (one prefill)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--sample", action="store_true", help="sample the CoT instead of greedy decoding")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None)
    parser.set_defaults(run=run_score)


def _add_demo_command(commands) -> None:
    parser = commands.add_parser("demo", help="offline CPU demo on a tiny random DeScore model")
    parser.add_argument("--out", required=True, help="directory for the model, videos and results")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run_demo)


def run_score(args: argparse.Namespace) -> None:
    from .modeling import CONFIG_NAME, DeScoreConfig, DeScoreModel
    from .video import load_video

    config_path = Path(args.model) / CONFIG_NAME
    if not config_path.is_file():
        raise CommandError(f"{args.model}: not a DeScore checkpoint directory (no {CONFIG_NAME})")
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise CommandError("--batch-size and --max-new-tokens must be at least 1")
    config = DeScoreConfig.from_dict(json.loads(config_path.read_text()), source=str(config_path))
    videos = [load_video(path, config.sampling) for path in args.videos]  # every file checked before loading
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = DeScoreModel.from_pretrained(args.model, dtype=DTYPES.get(args.dtype), device=device)
    results = model.score(
        videos,
        args.prompt,
        think=not args.no_think,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        seed=args.seed,
    )
    for result in results:
        if args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            scores = " ".join(f"{k}={v}" for k, v in (result.scores or {}).items()) or "-"
            print(f"{result.reward:.4f}\t{result.video}\t{scores}")


def run_demo(args: argparse.Namespace) -> None:
    from .demo import run

    run(Path(args.out), seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="descore", description="DeScore think-then-score video reward model")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_score_command(commands)
    _add_demo_command(commands)
    args = parser.parse_args(argv)
    from .video import VideoInputError

    try:
        args.run(args)
    except (CommandError, VideoInputError, FileNotFoundError, FileExistsError) as error:
        print(f"descore {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
