"""`descore eval`: score a benchmark resumably, compute accuracies, and draw the paper's table.

Each unique (video, prompt) is scored once. Scores are appended to `OUT/scores-rank{R}.jsonl` as
they are computed (flushed and fsynced), so an interrupted run continues where it stopped and never
recomputes a finished score. With several processes (`accelerate launch`), the unscored videos are
split across them and the main process gathers every shard. `OUT/metrics.json` accumulates
`{model: {benchmark: metrics}}` across runs, so three runs into one OUT fill the whole table, which
is written as `table.md` and `table.png`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..atomic import append_jsonl, atomic_write_text, claim_folder, read_jsonl_log, release_folder
from ..data import LABELS, PreferencePair, read_genai_bench, read_jsonl, read_mj_bench_video, read_videoalign_csv
from ..errors import DeScoreInputError, OutputFolderError
from ..hub import is_repo_id
from ..plots import save_figure
from .metrics import preference_metrics

BENCHMARKS: dict[str, Callable[..., list[PreferencePair]]] = {
    "in-domain": read_jsonl,
    "genai-bench": read_genai_bench,
    "videogen-rewardbench": read_videoalign_csv,
    "mj-bench-video": read_mj_bench_video,
}
# The paper's table: (benchmark, metric, column title).
TABLE_COLUMNS = [
    ("in-domain", "accuracy_with_ties", "In-domain w/ tie"),
    ("genai-bench", "accuracy_with_ties", "GenAI w/ tie"),
    ("genai-bench", "accuracy_without_ties", "GenAI w/o tie"),
    ("videogen-rewardbench", "accuracy_with_ties", "VideoGen w/ tie"),
    ("videogen-rewardbench", "accuracy_without_ties", "VideoGen w/o tie"),
    ("mj-bench-video", "accuracy_with_ties", "MJ-Video w/ tie"),  # not in the paper's table
    ("mj-bench-video", "accuracy_without_ties", "MJ-Video w/o tie"),
]
RUN_FILE = "run.json"
REPORT_FILES = ("metrics.json", "table.md", "table.png")


def score_key(video: str | os.PathLike, prompt: str) -> str:
    return f"{Path(video).resolve()}\x00{prompt}"


def read_scores(paths: list[Path], relative_to: Path | None = None) -> dict[str, dict]:
    """Score rows `{"video", "prompt", "reward", ...}` by key; a torn last line (a crash mid-write) is skipped.
    Relative video paths resolve against `relative_to` (default: the working directory)."""
    scores = {}
    for path in paths:
        for row in read_jsonl_log(path):  # a line torn by a crash mid-write is left out: scored again
            video = Path(row.get("video", ""))
            if not row.get("video") or "prompt" not in row:
                raise OutputFolderError(f"{path}: a row without video and prompt; not a scores file of descore eval")
            video = (relative_to / video) if relative_to is not None and not video.is_absolute() else video
            scores[score_key(video, row["prompt"])] = row
    return scores


def check_output_folder(out: Path) -> None:
    """Before any scoring: refuse an `out` holding results that `descore eval` did not write (no
    `run.json`), or a `metrics.json` it cannot read back, so that nothing there is overwritten."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{out}: exists and is not a folder; expected an output folder")
    if out.is_dir() and not (out / RUN_FILE).is_file():
        ours = [name for name in REPORT_FILES if (out / name).exists()]  # what a run rewrites
        if ours:
            raise OutputFolderError(
                f"{out}: holds {', '.join(ours)} but no {RUN_FILE}, so descore eval did not write them; "
                "not overwriting: choose another --out"
            )
    read_results(out)


def read_results(out: Path) -> dict:
    """`out/metrics.json` as `{model: {benchmark: metrics}}`, or {} when there is none yet."""
    path = out / "metrics.json"
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OutputFolderError(f"{path}: not valid JSON ({error}); move it away or choose another --out") from None
    if not isinstance(results, dict):
        raise OutputFolderError(f"{path}: expected a JSON object of results, got {type(results).__name__}")
    return results


def check_run(out: Path, run: dict) -> None:
    """Refuse to mix scores of another model or mode into `out` (`run.json` says whose they are)."""
    path = out / RUN_FILE
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise OutputFolderError(f"{path}: not valid JSON ({error}); choose another --out") from None
        if previous != run:
            raise OutputFolderError(
                f"{out}: holds scores of another run {previous}; this run is {run}. Use another --out"
            )


def score_pairs(
    model, pairs: list[PreferencePair], out: Path, think: bool, batch_size: int = 8, accelerator=None, **score_kwargs
) -> dict[str, dict]:
    """Score every unique (video, prompt) of `pairs` not yet in `out`; returns all scores by key."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    items = {}
    for pair in pairs:
        for video in (pair.video_a, pair.video_b):
            items.setdefault(score_key(video, pair.prompt), (video, pair.prompt))
    done = read_scores(sorted(out.glob("scores-rank*.jsonl")))
    # Ranks own fixed slices of the full list, so the split never depends on when a rank starts.
    todo = [item for index, (key, item) in enumerate(items.items()) if index % world == rank and key not in done]
    out.mkdir(parents=True, exist_ok=True)
    shard = out / f"scores-rank{rank}.jsonl"
    with tqdm(total=len(todo), desc="scoring", disable=rank != 0) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            results = model.score(
                [v for v, _ in batch], [p for _, p in batch], think=think, batch_size=batch_size, **score_kwargs
            )
            rows = [
                {**result.to_dict(), "video": str(Path(video).resolve()), "prompt": prompt}
                for (video, prompt), result in zip(batch, results, strict=True)
            ]
            append_jsonl(shard, rows)
            bar.update(len(batch))
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return read_scores(sorted(out.glob("scores-rank*.jsonl")))


def pair_margins(pairs: list[PreferencePair], scores: dict[str, dict], name: str = "model") -> np.ndarray:
    """Margins `r(A) - r(B)` per pair; raises naming the first video `scores` lacks."""
    margins = []
    for pair in pairs:
        rewards = []
        for video in (pair.video_a, pair.video_b):
            row = scores.get(score_key(video, pair.prompt))
            if row is None or row.get("reward") is None:
                raise DeScoreInputError(f"{name}: no score for {video} with the prompt of {pair.source}")
            rewards.append(float(row["reward"]))
        margins.append(rewards[0] - rewards[1])
    return np.asarray(margins)


def benchmark_metrics(pairs: list[PreferencePair], margins: np.ndarray, bootstrap: int = 0) -> dict:
    """Overall metrics plus per-dimension accuracies of the same margins against each dimension's labels."""
    metrics = preference_metrics([p.human for p in pairs], margins, bootstrap=bootstrap)
    dimensions = sorted({d for pair in pairs for d in pair.dimension_labels})
    for dimension in dimensions:
        labelled = [i for i, pair in enumerate(pairs) if dimension in pair.dimension_labels]
        labels = [LABELS[pairs[i].dimension_labels[dimension]] for i in labelled]
        metrics.setdefault("dimensions", {})[dimension] = preference_metrics(labels, margins[labelled])
    return metrics


def render_table(results: dict[str, dict[str, dict]]) -> str:
    """The paper's table in Markdown: a row per model, a column per (benchmark, metric)."""
    lines = [
        "| Model | " + " | ".join(title for _, _, title in TABLE_COLUMNS) + " |",
        "|---|" + "---|" * len(TABLE_COLUMNS),
    ]
    for model, benchmarks in results.items():
        cells = []
        for benchmark, metric, _ in TABLE_COLUMNS:
            value = benchmarks.get(benchmark, {}).get(metric)
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    counts = pair_counts(results)
    if counts:
        lines += ["", "Pairs: " + "; ".join(f"{name} {text}" for name, text in counts.items()) + ". - : not run."]
    return "\n".join(lines) + "\n"


def pair_counts(results: dict[str, dict[str, dict]]) -> dict[str, str]:
    """Each benchmark run's pair count, with its human ties: the scale a reader needs to judge a score."""
    counts = {}
    for benchmarks in results.values():
        for benchmark, metrics in benchmarks.items():
            if "pairs" in metrics:
                counts[benchmark] = f"{metrics['pairs']} ({metrics.get('human_ties', 0)} tied)"
    return counts


def plot_table(results: dict[str, dict[str, dict]], path: Path) -> None:
    """Grouped bars: a group per table column, a bar per model, the value printed on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    columns = [c for c in TABLE_COLUMNS if any(results[m].get(c[0], {}).get(c[1]) is not None for m in models)]
    width = 0.8 / max(len(models), 1)
    figure, axes = plt.subplots(figsize=(2.2 * max(len(columns), 1) + 1, 4))
    for index, model in enumerate(models):
        values = [results[model].get(b, {}).get(m) for b, m, _ in columns]
        xs = [c + (index - (len(models) - 1) / 2) * width for c in range(len(columns))]
        drawn = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]  # a run not made is no bar
        bars = axes.bar([x for x, _ in drawn], [v for _, v in drawn], width, label=model)
        for bar, (_, value) in zip(bars, drawn, strict=True):
            axes.annotate(
                f"{value:.3f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=7
            )
    counts = pair_counts(results)
    labels = [f"{title}\n{counts.get(benchmark, '')} pairs" for benchmark, _, title in columns]
    axes.set_xticks(range(len(columns)), labels, fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("preference accuracy")
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def write_report(
    out: Path, model_name: str, benchmark: str, metrics: dict, baselines: dict[str, dict] | None = None
) -> dict:
    """Merge into `out/metrics.json` and rewrite `table.md` and `table.png`; returns all results."""
    path = out / "metrics.json"
    results = read_results(out)
    results.setdefault(model_name, {})[benchmark] = metrics
    for name, baseline in (baselines or {}).items():
        results.setdefault(name, {})[benchmark] = baseline
    atomic_write_text(path, json.dumps(results, indent=2))
    atomic_write_text(out / "table.md", render_table(results))
    plot_table(results, out / "table.png")
    return results


def load_benchmark(
    benchmark: str,
    data: str | Path,
    limit: int | None = None,
    video_root: str | None = None,
    label_column: str | None = None,
) -> list[PreferencePair]:
    """Read and validate a benchmark file (every problem reported before any scoring)."""
    if benchmark not in BENCHMARKS:
        raise DeScoreInputError(f"unknown benchmark {benchmark!r}; expected one of {sorted(BENCHMARKS)}")
    if benchmark == "genai-bench":
        return read_genai_bench(data, video_root=video_root, limit=limit)
    if benchmark == "videogen-rewardbench":
        return read_videoalign_csv(data, label_column=label_column, limit=limit)
    if benchmark == "mj-bench-video":
        return read_mj_bench_video(data, video_root=video_root, limit=limit)
    return read_jsonl(data, limit=limit)


def evaluate(
    model_dir: str | Path,
    benchmark: str,
    data: str | Path,
    out: str | Path,
    think: bool = True,
    baselines: dict[str, str] | None = None,
    limit: int | None = None,
    video_root: str | None = None,
    label_column: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    bootstrap: int = 0,
    name: str | None = None,
    dtype=None,
    backbone: str | None = None,
    engine: str = "hf",
) -> dict:
    """Score `benchmark` with the DeScore checkpoint `model_dir` into `out`, on `engine` ("hf", or "vllm":
    then `model_dir` may be an export); returns all results so far."""
    from accelerate import Accelerator

    from ..engines import check_model_folder, load_scorer

    out = Path(out)
    pairs = load_benchmark(benchmark, data, limit, video_root, label_column)
    check_model_folder(model_dir, engine)  # a mistyped --model fails before anything is written
    baseline_metrics = {}
    for baseline, path in (baselines or {}).items():  # checked before the model loads
        if not Path(path).is_file():
            raise FileNotFoundError(f"--baseline {baseline}: no such scores file {path}")
        scores = read_scores([Path(path)], relative_to=Path(data).parent)
        baseline_metrics[baseline] = benchmark_metrics(pairs, pair_margins(pairs, scores, baseline), bootstrap)
    check_output_folder(out)
    model_name_or_path = str(model_dir) if is_repo_id(model_dir) else str(Path(model_dir).resolve())
    run = {"model": model_name_or_path, "think": think, "max_new_tokens": max_new_tokens}
    check_run(out, run)
    accelerator = Accelerator()
    model = load_scorer(model_dir, engine, device=accelerator.device, dtype=dtype, backbone=backbone)
    if accelerator.is_main_process:
        claim_folder(out)  # one run at a time on a folder
        if not (out / RUN_FILE).exists():  # recorded once the model loaded
            atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2))
    accelerator.wait_for_everyone()
    scores = score_pairs(model, pairs, out, think, batch_size, accelerator, max_new_tokens=max_new_tokens)
    if not accelerator.is_main_process:
        return {}
    metrics = benchmark_metrics(pairs, pair_margins(pairs, scores), bootstrap)
    rows = [scores[score_key(v, p.prompt)] for p in pairs for v in (p.video_a, p.video_b)]
    unique = {score_key(r["video"], r["prompt"]): r for r in rows}
    atomic_write_text(out / f"scores-{benchmark}.jsonl", "".join(json.dumps(r) + "\n" for r in unique.values()))
    results = write_report(out, name or model_name(model_dir), benchmark, metrics, baseline_metrics)
    release_folder(out)
    return results


def model_name(model_dir: str | Path) -> str:
    """A model's name in the table: its folder's, or for a trainer's `final/` or `checkpoint-N/` the run's."""
    path = Path(model_dir).resolve()
    if path.name == "final":
        return path.parent.name
    if path.name.startswith("checkpoint-"):
        return f"{path.parent.name}/{path.name}"
    return path.name
