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
    for axis in list(axes.flat)[len(curves) :]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def save_figure(figure, path: str | Path, dpi: int) -> None:
    """Write a matplotlib `figure` to `path` as PNG through a temporary file, then close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
