"""The `descore` command line: `descore demo`, `score`, `eval`, `train`, `annotate`, `convert`, `export`,
`serve`.

Only the standard library is imported until a command runs, so `descore --help` answers at once.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")
# File-system refusals a user can act on; written outputs are staged, so none is left half-written.
FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}
BENCHMARK_NAMES = ("genai-bench", "in-domain", "mj-bench-video", "videogen-rewardbench")  # runner.BENCHMARKS' keys


def _dtype(name: str | None):
    import torch

    return None if name is None else getattr(torch, name)


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def at_least(minimum: int):
    """An argparse type: an integer of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
        return value

    return parse


def _add_score_command(commands) -> None:
    parser = commands.add_parser("score", help="score videos think-then-score (or fast, --no-think)")
    parser.add_argument("videos", nargs="*", help="video files, all generated from --prompt")
    parser.add_argument("--prompt", help="the text prompt the videos were generated from")
    parser.add_argument(
        "--manifest", help="instead of videos and --prompt: a CSV (header video,prompt) or JSONL of {video, prompt}"
    )
    parser.add_argument(
        "--model", help="a DeScore checkpoint directory (save_pretrained), or an export (--engine vllm)"
    )
    parser.add_argument("--backbone", help="where the checkpoint's backbone is on this machine, if not where it says")
    _add_engine_arguments(parser, server=True)
    parser.add_argument("--no-think", action="store_true", help="score without generating a CoT (one prefill)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    parser.add_argument(
        "--max-new-tokens", type=at_least(1), default=None, help="default: the rubric's (4096 for descore)"
    )
    parser.add_argument("--sample", action="store_true", help="sample the CoT instead of greedy decoding")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--batch-size", type=at_least(1), default=None, help="default: 8 (hf), 64 (vllm, server)")
    parser.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--dtype", choices=DTYPES, default=None)
    parser.set_defaults(run=run_score)


def _add_engine_arguments(parser, server: bool) -> None:
    parser.add_argument(
        "--engine", choices=("hf", "vllm"), default="hf", help="vllm: continuous batching, for think mode at scale"
    )
    if server:
        parser.add_argument("--server", help="score on a DeScore server (descore serve) at this URL, not locally")


def _add_convert_command(commands) -> None:
    parser = commands.add_parser("convert", help="import checkpoints from elsewhere")
    sources = parser.add_subparsers(dest="source", required=True)
    official = sources.add_parser("official", help="the authors' release: a Qwen3-VL folder and rm_head.pth")
    official.add_argument("--model", required=True, help="their Hugging Face folder (tokenizer with <Reward>)")
    official.add_argument("--rm-head", required=True, help="their rm_head.pth (read with weights_only=True)")
    official.add_argument("--out", required=True, help="the DeScore checkpoint to write")
    official.add_argument(
        "--instruction-file", help="the instruction they trained with, {prompt} where the prompt goes"
    )
    official.set_defaults(run=run_convert_official)


def _add_download_command(commands) -> None:
    parser = commands.add_parser("download", help="fetch a benchmark's videos published as URLs (resumable)")
    sources = parser.add_subparsers(dest="benchmark", required=True)
    genai = sources.add_parser("genai-bench", help="GenAI-Bench's video_generation rows: left_video, right_video")
    genai.add_argument("--data", required=True, help="its parquet file, or the folder of its parquet files")
    genai.add_argument("--video-root", required=True, help="where the videos go (what descore eval --video-root reads)")
    genai.add_argument("--retries", type=at_least(0), default=3)
    genai.set_defaults(run=run_download)


def run_download(args: argparse.Namespace) -> None:
    from .evaluation.download import benchmark_urls, download_videos

    urls = benchmark_urls(args.data)
    done = download_videos(urls, args.video_root, retries=args.retries)
    print(f"{done.fetched} downloaded, {done.present} already in {args.video_root}, {len(done.failed)} failed")
    if done.failed:
        failures = "; ".join(f"{url} ({why})" for url, why in list(done.failed.items())[:5])
        raise CommandError(f"{len(done.failed)} video(s) failed, e.g. {failures}; run the same command to retry")


def _add_export_command(commands) -> None:
    parser = commands.add_parser("export", help="write a checkpoint for another engine")
    targets = parser.add_subparsers(dest="target", required=True)
    vllm = targets.add_parser("vllm", help="a plain Hugging Face folder that vLLM serves, the head in the LM head")
    vllm.add_argument("--model", required=True, help="a DeScore checkpoint directory")
    vllm.add_argument("--out", required=True, help="the folder to write (replaced only if it is an export)")
    vllm.add_argument("--dtype", choices=DTYPES, default=None, help="of the exported weights (default: as loaded)")
    vllm.set_defaults(run=run_export_vllm)


def run_export_vllm(args: argparse.Namespace) -> None:
    from .engines.export import export_for_vllm

    out = export_for_vllm(args.model, args.out, dtype=_dtype(args.dtype))
    print(f"wrote {out}: serve it with  descore serve --model {out}  or score with  --engine vllm --model {out}")


def run_convert_official(args: argparse.Namespace) -> None:
    from .convert import convert_official

    out = convert_official(args.model, args.rm_head, args.out, args.instruction_file)
    print(f"wrote {out}: score with  descore score VIDEO --prompt TEXT --model {out}")


def _add_quick_look_command(commands) -> None:
    parser = commands.add_parser(
        "quick-look", help="the paper's five VBench dimensions without VBench, from VBench's weight cache"
    )
    parser.add_argument("videos", nargs="+", help="MP4 files, or folders of them ({prompt}-{i}.mp4 to compare runs)")
    parser.add_argument("--name", required=True, help="run name: writes {out}/{name}_eval_results.json")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--dimensions", nargs="+", help="some of the five VBench dimensions (default: all)")
    parser.add_argument("--cache", help="VBench's weight cache (default $VBENCH_CACHE_DIR or ~/.cache/vbench)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.set_defaults(run=run_quick_look)


def run_quick_look(args: argparse.Namespace) -> None:
    import torch

    from .modeling import check_device
    from .vbench.quick_look import QuickLook
    from .vbench.results import VBENCH_DIMENSIONS, results_path

    paths = []
    for video in map(Path, args.videos):
        if video.is_dir():
            paths += sorted(video.glob("*.mp4"))
        elif video.is_file():
            paths.append(video)
        else:
            raise CommandError(f"{video}: no such video file or folder")
    if not paths:
        raise CommandError(f"{', '.join(args.videos)}: no .mp4 files")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    try:
        quick_look = QuickLook(args.dimensions or VBENCH_DIMENSIONS, cache_dir=args.cache, device=device)
    except ValueError as error:
        raise CommandError(f"--dimensions: {error}") from None
    out = results_path(args.out, args.name)
    results = quick_look.evaluate(paths, out)
    for dimension, values in results.items():
        print(f"{dimension:<23} {sum(values.values()) / len(values):.4f}  ({len(values)} videos)")
    print(f"wrote {out}")


def _add_demo_command(commands) -> None:
    parser = commands.add_parser("demo", help="offline CPU demo on a tiny random DeScore model")
    parser.add_argument("--out", required=True, help="directory for the model, videos and results")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run_demo)


def _add_eval_command(commands) -> None:
    parser = commands.add_parser("eval", help="preference accuracy on a benchmark, resumable, with the paper's table")
    parser.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES)
    parser.add_argument(
        "--data",
        required=True,
        help="JSONL (in-domain), CSV or parquet (VideoGen), parquet or a folder of it (GenAI, MJ)",
    )
    parser.add_argument("--model", required=True, help="a DeScore checkpoint directory, or an export (--engine vllm)")
    parser.add_argument("--backbone", help="where the checkpoint's backbone is on this machine, if not where it says")
    _add_engine_arguments(parser, server=False)
    parser.add_argument("--out", required=True, help="scores, metrics.json, table.md and table.png go here")
    parser.add_argument("--no-think", action="store_true", help="score without generating CoTs")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME=SCORES.jsonl",
        help='another model\'s scores, rows {"video", "prompt", "reward"}; repeatable',
    )
    parser.add_argument("--name", default=None, help="this model's row name in the table (default: folder name)")
    parser.add_argument("--limit", type=at_least(1), default=None, help="only the first N pairs")
    parser.add_argument("--video-root", default=None, help="GenAI-Bench, MJ-Bench-Video: the videos' folder")
    parser.add_argument("--label-column", default=None, help="VideoGen CSV: label column (default Overall)")
    parser.add_argument("--batch-size", type=at_least(1), default=None, help="default: 8 (hf), 64 (vllm)")
    parser.add_argument(
        "--max-new-tokens", type=at_least(1), default=None, help="default: the rubric's (4096 for descore)"
    )
    parser.add_argument("--bootstrap", type=at_least(0), default=0, help="bootstrap resamples for 95%% intervals")
    parser.add_argument("--dtype", choices=DTYPES, default=None)
    parser.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> None:
    from .evaluation.runner import evaluate, render_table

    baselines = {}
    for spec in args.baseline:
        name, separator, path = spec.partition("=")
        if not separator or not name or not path:
            raise CommandError(f"--baseline {spec!r}: expected NAME=SCORES.jsonl")
        baselines[name] = path
    args.interrupted = lambda: f"the scores so far are kept in {args.out}; run the same command again to go on"
    results = evaluate(
        args.model,
        args.benchmark,
        args.data,
        args.out,
        think=not args.no_think,
        baselines=baselines,
        limit=args.limit,
        video_root=args.video_root,
        label_column=args.label_column,
        batch_size=args.batch_size or (64 if args.engine == "vllm" else 8),
        max_new_tokens=args.max_new_tokens,
        bootstrap=args.bootstrap,
        name=args.name,
        dtype=_dtype(args.dtype),
        backbone=args.backbone,
        engine=args.engine,
    )
    if results:
        print(render_table(results), end="")
        print(f"wrote {Path(args.out) / 'metrics.json'}, table.md and table.png")


def _add_train_command(commands) -> None:
    parser = commands.add_parser("train", help="train DeScore (stage 1, stage 2), or post-train Wan-2.1 with it")
    trainers = parser.add_subparsers(dest="trainer", required=True)
    for name, config, run, help in (
        ("cold-start", "ColdStartConfig", run_train_cold_start, "DeScore stage 1: BT loss with random CoT masking"),
        ("rl", "RLConfig", run_train_rl, "DeScore stage 2: GRPO on the CoT plus the auxiliary BT loss"),
        ("flow-dpo", "FlowDPOConfig", run_train_flow_dpo, "Wan-2.1 LoRA by Flow-DPO on DeScore-labelled pairs"),
        ("wan-grpo", "WanGRPOConfig", run_train_wan_grpo, "Wan-2.1 LoRA by GRPO with DeScore as the reward"),
    ):
        trainer = trainers.add_parser(name, help=help)
        trainer.add_argument("--config", required=True, help=f"YAML file of {config} fields")
        trainer.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
        trainer.set_defaults(run=run)
        if name == "wan-grpo":
            trainer.add_argument("--prompts", help="a text file, one prompt per line (instead of the config's prompts)")


def _training_config(cls, args: argparse.Namespace):
    """A training config from `--config` and the `key=value` overrides; a bad key is a one-line error."""
    from .training.config import load_config

    try:
        config = load_config(cls, args.config, args.overrides)
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from None
    args.interrupted = lambda: _where_training_stopped(Path(config.output_dir))
    return config


def _where_training_stopped(output_dir: Path) -> str:
    """What an interrupted training run leaves: its newest checkpoint, and how to resume from it."""
    from .training.checkpoint import checkpoints

    found = checkpoints(output_dir)
    if not found:
        return f"no checkpoint was written yet in {output_dir} (save_every sets how often); a rerun starts afresh"
    return f"the newest checkpoint is {found[-1]}; run the same command again to resume from it"


def run_train_rl(args: argparse.Namespace) -> None:
    from .training.rl import RLConfig, train

    config = _training_config(RLConfig, args)
    state = train(config)
    if state["history"]:
        first, last = state["history"][0], state["history"][-1]
        print(
            f"rollout reward {first['rollout_reward']:.3f} -> {last['rollout_reward']:.3f}, "
            f"format rate {first['format_rate']:.2f} -> {last['format_rate']:.2f}"
        )
    print(f"model saved to {Path(config.output_dir) / 'final'}")


def run_train_cold_start(args: argparse.Namespace) -> None:
    from .training.cold_start import ColdStartConfig, train

    config = _training_config(ColdStartConfig, args)
    state = train(config)
    evaluations = state["evaluations"]
    if evaluations:
        print(f"held-out accuracy: before {evaluations[0]} after {evaluations[-1]}")
    print(f"model saved to {Path(config.output_dir) / 'final'}")


def run_train_flow_dpo(args: argparse.Namespace) -> None:
    from .wan.flow_dpo import FlowDPOConfig, train

    config = _training_config(FlowDPOConfig, args)
    state = train(config)
    print(f"flow-dpo: {state['step']} steps, last loss {state['history'][-1]['loss']:.4f}")
    print(f"LoRA saved to {Path(config.output_dir) / 'final'} (WanPipeline.load_lora_weights reads it)")


def run_train_wan_grpo(args: argparse.Namespace) -> None:
    from .wan.grpo import WanGRPOConfig, train

    if args.prompts:
        from .data import read_text_file

        lines = read_text_file(Path(args.prompts), "prompts file").splitlines()
        prompts = [line.strip() for line in lines if line.strip()]
        args.overrides = [*args.overrides, f"prompts={json.dumps(prompts)}"]
    config = _training_config(WanGRPOConfig, args)
    if not config.prompts:
        raise CommandError(f"{args.config}: no prompts; give them in the config or with --prompts FILE")
    if not config.reward_model and not config.reward_server:
        raise CommandError(
            f"{args.config}: no reward_model; give a DeScore checkpoint as reward_model=PATH (or reward_server=URL)"
        )
    state = train(config)
    print(f"wan-grpo: {state['step']} steps, last mean reward {state['history'][-1]['reward']:.4f}")
    print(f"LoRA saved to {Path(config.output_dir) / 'final'} (WanPipeline.load_lora_weights reads it)")


def _add_annotate_command(commands) -> None:
    parser = commands.add_parser("annotate", help="CoTs from a teacher VLM, filtered for consistency with the labels")
    parser.add_argument("--pairs", required=True, help="pairs JSONL (this project's schema)")
    parser.add_argument("--teacher", required=True, help="a local VLM id or path, or the endpoint's model name")
    parser.add_argument("--stage", type=int, choices=[1, 2], required=True, help="2 also writes scores_a / scores_b")
    parser.add_argument("--out", required=True, help="kept rows; OUT.rejected.jsonl and OUT.failed.jsonl beside it")
    parser.add_argument(
        "--endpoint", default=None, help="base URL of an OpenAI-compatible API, e.g. http://host:8000/v1"
    )
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    parser.add_argument(
        "--rubric", choices=("descore", "likert5"), default="descore", help="the answer format asked for"
    )
    parser.add_argument("--tie-margin", type=float, default=0.0, help="qualities this close imply a tie")
    parser.add_argument("--frames", type=at_least(1), default=8, help="frames sent per video to an endpoint")
    parser.add_argument("--requests-per-minute", type=float, default=None)
    parser.add_argument("--max-retries", type=at_least(0), default=5)
    parser.add_argument("--batch-size", type=at_least(1), default=4)
    parser.add_argument("--max-new-tokens", type=at_least(1), default=1024)
    parser.set_defaults(run=run_annotate)


def run_annotate(args: argparse.Namespace) -> None:
    from .annotate import EndpointTeacher, LocalTeacher, annotate
    from .data import read_jsonl

    read_jsonl(args.pairs)  # every bad row reported before a teacher loads
    if args.endpoint:
        teacher = EndpointTeacher(
            args.endpoint,
            args.teacher,
            api_key_env=args.api_key_env,
            frames=args.frames,
            max_tokens=args.max_new_tokens,
            max_retries=args.max_retries,
            requests_per_minute=args.requests_per_minute,
            rubric=args.rubric,
        )
    else:
        teacher = LocalTeacher(args.teacher, max_new_tokens=args.max_new_tokens, rubric=args.rubric)
    summary = annotate(
        args.pairs,
        teacher,
        args.out,
        stage=args.stage,
        tie_margin=args.tie_margin,
        batch_size=args.batch_size,
        rubric=args.rubric,
    )
    print(
        f"kept {summary.kept}, rejected {summary.rejected}, failed {summary.failed}, already done "
        f"{summary.skipped}; kept ratio {summary.kept_ratio:.3f}"
    )


def _score_inputs(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    """(videos, prompts) from positional videos and --prompt, or from --manifest."""
    from .data import read_manifest

    if args.manifest:
        if args.videos or args.prompt is not None:
            raise CommandError("give either --manifest, or videos and --prompt, not both")
        rows = read_manifest(args.manifest)
        return [video for video, _ in rows], [prompt for _, prompt in rows]
    if not args.videos or args.prompt is None:
        raise CommandError("give video files and --prompt, or --manifest FILE")
    return [Path(video) for video in args.videos], [args.prompt] * len(args.videos)


def run_score(args: argparse.Namespace) -> None:
    videos, prompts = _score_inputs(args)
    from .video import check_video_file

    if args.server and args.model:
        raise CommandError("give --model or --server, not both: the server holds its own model")
    if not args.server and not args.model:
        raise CommandError("give --model DIR (a DeScore checkpoint), or --server URL")
    if args.model:
        from .engines import check_model_folder

        check_model_folder(args.model, args.engine)  # a bad checkpoint and every bad file fail before loading
    for video in videos:
        check_video_file(video)
    if args.server:
        from .engines.client import DeScoreClient

        scorer = DeScoreClient(args.server)
    else:
        import torch

        from .engines import load_scorer

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        scorer = load_scorer(args.model, args.engine, device=device, dtype=_dtype(args.dtype), backbone=args.backbone)
    results = scorer.score(
        videos,
        prompts,
        think=not args.no_think,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        seed=args.seed,
        **({} if args.batch_size is None else {"batch_size": args.batch_size}),
    )
    for result, prompt in zip(results, prompts, strict=True):
        if args.json:
            print(json.dumps({**result.to_dict(), "prompt": prompt}, ensure_ascii=False))
        else:
            scores = " ".join(f"{k}={v}" for k, v in (result.scores or {}).items()) or "-"
            print(f"{result.reward:.4f}\t{result.video}\t{scores}")


def _add_serve_command(commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve an exported DeScore on vLLM over HTTP; vLLM engine arguments pass through",
        epilog="e.g. descore serve --model EXPORT --host 0.0.0.0 --data-parallel-size 8 --gpu-memory-utilization 0.9",
    )
    parser.add_argument("--model", required=True, help="an exported folder (descore export vllm)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--print-command", action="store_true", help="print the server command instead of running it")
    parser.set_defaults(run=run_serve, passes_unknown=True)


def run_serve(args: argparse.Namespace) -> None:
    import importlib.util
    import os
    import shlex

    from .engines.export import read_export

    read_export(args.model)
    command = [sys.executable, "-m", "descore_reward.engines.server", "--model", str(args.model)]
    command += ["--host", args.host, "--port", str(args.port), *args.unknown]
    if args.print_command:
        print(shlex.join(command))
        return
    if importlib.util.find_spec("vllm") is None:
        raise CommandError(
            f"vLLM is not installed in this environment ({sys.executable}); install it (`pip install vllm`) "
            f"or run where it is: {shlex.join(['python', *command[1:]])}"
        )
    os.execv(sys.executable, command)


def run_demo(args: argparse.Namespace) -> None:
    from .demo import run

    run(Path(args.out), seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="descore", description="DeScore think-then-score video reward model")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_score_command(commands)
    _add_eval_command(commands)
    _add_train_command(commands)
    _add_annotate_command(commands)
    _add_convert_command(commands)
    _add_export_command(commands)
    _add_download_command(commands)
    _add_serve_command(commands)
    _add_quick_look_command(commands)
    _add_demo_command(commands)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_unknown", False):
        parser.parse_args(argv)  # the usual error for arguments no command takes
    args.unknown = unknown
    from .errors import DeScoreInputError, ServerError

    try:
        args.run(args)
    except (CommandError, DeScoreInputError, ServerError, FileNotFoundError, FileExistsError) as error:
        print(f"descore {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system said no (a full disk, no permission, read-only): name what
        if error.errno not in FILE_SYSTEM_ERRORS:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"descore {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: where the work stopped and how to go on, not a traceback
        where = getattr(args, "interrupted", None)
        print(f"descore {args.command}: interrupted" + (f"; {where()}" if where else ""), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
