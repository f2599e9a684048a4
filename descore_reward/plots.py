"""Figures written as PNG files atomically, and training curves: one small panel per logged series."""

from __future__ import annotations

import io
import math
from pathlib import Path

from .atomic import atomic_write_bytes


def plot_curves(curves: dict[str, list[float] | tuple[list, list]], path: str | Path, title: str) -> None:
    """Draw each series of `curves` (name -> one value per step from 1, or `(steps, values)`; NaN gaps
    allowed) in its own panel and write the figure to `path` atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, (name, series) in zip(axes.flat, curves.items()):
        steps, values = series if isinstance(series, tuple) else (range(1, len(series) + 1), series)
        axis.plot(steps, values, marker="." if len(values) < 30 else None)
        axis.set(xlabel="step", title=name)
        show_scale(axis, values)
    for axis in list(axes.flat)[len(curves) :]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def show_scale(axis, values) -> None:
    """Y limits that show a series' scale: a flat or nearly flat line stays flat (at least 10% of its
    size, or 0.1, is shown), and values at a bound such as 1.0 are not cut by the frame."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    span = max(high - low, 0.1 * max(abs(low), abs(high)), 0.1)
    middle = (low + high) / 2
    axis.set_ylim(min(low, middle - span / 2) - 0.05 * span, max(high, middle + span / 2) + 0.05 * span)


def save_figure(figure, path: str | Path, dpi: int) -> None:
    """Write a matplotlib `figure` to `path` as PNG through a temporary file, then close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def plot_gains(comparison: dict, path: str | Path, title: str) -> None:
    """Bars of each run's gain over the baseline per dimension with their bootstrap intervals, the paper's
    gains as black ticks where it has them (`comparison` from `vbench.compare`), written to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dimensions = comparison["dimensions"]
    runs = {name: row for name, row in comparison["runs"].items() if name != comparison["baseline"]}
    width = 0.8 / max(1, len(runs))
    figure, axis = plt.subplots(figsize=(2.2 * len(dimensions) + 1, 4))
    for k, (name, row) in enumerate(runs.items()):
        label = name  # on the run's first bar only
        for i, dimension in enumerate(dimensions):
            cell = row.get(dimension, {})
            if "gain" not in cell:
                continue
            x = i - 0.4 + width * (k + 0.5)
            error = [[cell["gain"] - cell["low"]], [cell["high"] - cell["gain"]]]
            axis.bar(x, cell["gain"], width, yerr=error, capsize=3, color=f"C{k}", label=label)
            label = None
            if cell.get("paper_gain") is not None:
                axis.plot([x - width / 2, x + width / 2], [cell["paper_gain"]] * 2, color="black", linewidth=2)
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_xticks(range(len(dimensions)), [d.replace("_", "\n") for d in dimensions])
    axis.set(ylabel=f"gain over {comparison['baseline']}", title=title)
    axis.legend(title="bars: measured, 95% CI; black: paper", fontsize=8, title_fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
