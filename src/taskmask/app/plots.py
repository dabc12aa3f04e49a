"""Training curves from a history (`taskmask.FitResult.history`) as PNG files.

matplotlib is imported only when a plot is drawn, and only its Agg canvas is used: no pyplot,
no global backend switch. An undefined metric is NaN in the history and shows as a gap.
Epoch ticks are whole numbers, each panel's y axis is labelled with what it shows, the best
epoch is marked, and a task with several labels also gets one validation curve per label.

`plot_history` draws, by ``mode`` (the run config's ``plots``): ``summary``, the total loss,
one grid of every task's loss and headline metric (one line per task up to `MAX_LINES` tasks,
a task x epoch heat map beyond) and the gradient cosines; ``all``, also one file per task.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from taskmask.errors import TaskmaskError

# The first of these a task has in its history is its main metric.
MAIN_METRICS = (
    "roc_auc",
    "roc_auc_macro",
    "f1_macro",
    "accuracy",
    "r2",
    "r2_macro",
    "mse",
    "mse_macro",
)
PREFIXES = ("train", "val")
PLOT_MODES = ("all", "summary", "none")
MAX_LINES = 12
"""Up to this many tasks a summary panel has one line per task; beyond, a heat map."""


def history_tasks(history: pd.DataFrame) -> list[str]:
    """Task names in history order, from the ``{train,val}/TASK/loss`` columns (not the
    cross-task ``{train,val}/mean/loss``)."""
    names: list[str] = []
    for column in map(str, history.columns):
        for prefix in PREFIXES:
            head, tail = f"{prefix}/", "/loss"
            if column.startswith(head) and column.endswith(tail) and len(column) > len(head + tail):
                name = column[len(head) : -len(tail)]
                if name not in names and name != "mean":
                    names.append(name)
    return names


def main_metric(history: pd.DataFrame, task: str) -> str | None:
    """The task's main metric: the first of `MAIN_METRICS` with a value, else the first present."""
    present = [
        metric
        for metric in MAIN_METRICS
        if any(f"{p}/{task}/{metric}" in history.columns for p in PREFIXES)
    ]
    for metric in present:
        columns = [f"{p}/{task}/{metric}" for p in PREFIXES if f"{p}/{task}/{metric}" in history]
        if history[columns].notna().to_numpy().any():
            return metric
    return present[0] if present else None


def _epochs(history: pd.DataFrame) -> pd.Series:
    return history["epoch"] if "epoch" in history else pd.Series(range(1, len(history) + 1))


def per_label_columns(history: pd.DataFrame, key: str) -> list[str]:
    """The per-label columns of a macro metric ``TASK/METRIC_macro``: validation ones
    (``val/TASK/METRIC/LABEL``), or training ones without validation."""
    task, _, metric = key.rpartition("/")
    if not metric.endswith("_macro"):
        return []
    for prefix in ("val", "train"):
        head = f"{prefix}/{task}/{metric.removesuffix('_macro')}/"
        found = [c for c in map(str, history.columns) if c.startswith(head)]
        if found:
            return found
    return []


def _draw(
    axes: Any, history: pd.DataFrame, key: str, title: str, best_epoch: int | None = None
) -> None:
    """Train and validation curves of ``{prefix}/{key}`` on ``axes`` (and per-label ones of
    a macro metric), the best epoch marked."""
    from matplotlib.ticker import MaxNLocator

    epochs = _epochs(history)
    for prefix in PREFIXES:
        column = f"{prefix}/{key}"
        if column in history:
            values = pd.to_numeric(history[column], errors="coerce")
            axes.plot(epochs, values, marker=".", linewidth=2, label=prefix)
    for column in per_label_columns(history, key):
        values = pd.to_numeric(history[column], errors="coerce")
        prefix, label = column.split("/", 1)[0], column.rsplit("/", 1)[-1]
        axes.plot(epochs, values, linewidth=0.8, alpha=0.7, label=f"{prefix} {label}")
    if best_epoch is not None:
        axes.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(key.rsplit("/", 1)[-1])
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    axes.grid(alpha=0.3)


def _save(
    panels: Sequence[tuple[str, str]],
    history: pd.DataFrame,
    path: Path,
    best_epoch: int | None = None,
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * len(panels), 3.6))
    FigureCanvasAgg(figure)
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    # Fixed margins: a layout engine costs more than the drawing itself.
    figure.subplots_adjust(left=0.1, right=0.97, bottom=0.15, top=0.88, wspace=0.3)
    for axes, (key, title) in zip(grid, panels, strict=True):
        _draw(axes, history, key, title, best_epoch)
    figure.savefig(path, dpi=100)
    return path


def _save_cosines(history: pd.DataFrame, columns: Sequence[str], path: Path) -> Path:
    """One line per task pair: the cosine of their trunk gradients per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    figure.subplots_adjust(left=0.12, right=0.7, bottom=0.15, top=0.88)
    from matplotlib.ticker import MaxNLocator

    epochs = _epochs(history)
    for column in columns:
        values = pd.to_numeric(history[column], errors="coerce")
        axes.plot(epochs, values, marker=".", label=column.removeprefix("cosine/"))
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set_title("gradient cosine on the trunk")
    axes.set_xlabel("epoch")
    axes.set_ylabel("cosine")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def _file_stem(task: str, used: set[str]) -> str:
    stem = "task_" + (re.sub(r"[^A-Za-z0-9_-]+", "_", task) or "_")
    while stem in used:
        stem += "_"
    used.add(stem)
    return stem


def best_epoch_of(history: pd.DataFrame) -> int | None:
    """The epoch of the lowest ``val/loss`` (None without one)."""
    if "val/loss" not in history or history["val/loss"].isna().all():
        return None
    return int(_epochs(history)[history["val/loss"].idxmin()])


def summary_panels(history: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """``{METRIC: [(task, column), ...]}``: each task's loss and headline metric, validation
    columns where there are some, else training ones."""
    prefix = "val" if any(str(c).startswith("val/") for c in history.columns) else "train"
    panels: dict[str, list[tuple[str, str]]] = {}
    for task in history_tasks(history):
        for metric in dict.fromkeys(("loss", main_metric(history, task) or "loss")):
            column = f"{prefix}/{task}/{metric}"
            if column in history:
                panels.setdefault(f"{prefix}/{metric}", []).append((task, column))
    return panels


def _draw_panel(
    figure: Any, axes: Any, history: pd.DataFrame, title: str, lines: Sequence[tuple[str, str]]
) -> None:
    from matplotlib.ticker import MaxNLocator

    epochs = _epochs(history)
    values = history[[c for _, c in lines]].apply(pd.to_numeric, errors="coerce")
    if len(lines) <= MAX_LINES:
        for task, column in lines:
            axes.plot(epochs, values[column], marker=".", linewidth=1, label=task)
        axes.legend(fontsize="x-small", ncol=2)
        axes.set_ylabel(title.rsplit("/", 1)[-1])
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    else:
        image = axes.imshow(
            values.to_numpy(dtype=float).T,
            aspect="auto",
            interpolation="nearest",
            extent=(float(epochs.min()) - 0.5, float(epochs.max()) + 0.5, len(lines), 0),
        )
        figure.colorbar(image, ax=axes)
        axes.set_ylabel(f"task (of {len(lines)})")
    axes.set_title(title)
    axes.set_xlabel("epoch")


def _save_summary(history: pd.DataFrame, path: Path) -> Path | None:
    """Every task's loss and headline metric in one grid of panels (`summary_panels`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = summary_panels(history)
    if not panels:
        return None
    n_cols = min(3, len(panels))
    n_rows = -(-len(panels) // n_cols)
    figure = Figure(figsize=(5 * n_cols, 3.8 * n_rows))
    FigureCanvasAgg(figure)
    grid = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    figure.subplots_adjust(left=0.08, right=0.97, bottom=0.1, top=0.92, wspace=0.3, hspace=0.4)
    for axes, (title, lines) in zip(grid, panels.items(), strict=False):
        _draw_panel(figure, axes, history, title, lines)
    for axes in grid[len(panels) :]:
        axes.set_visible(False)
    figure.savefig(path, dpi=100)
    return path


def plot_history(
    history: pd.DataFrame,
    out_dir: Path,
    *,
    best_epoch: int | None = None,
    mode: str = "all",
) -> list[Path]:
    """Write ``loss.png`` (total loss), ``summary.png`` (`summary_panels`), with ``mode="all"``
    one ``task_NAME.png`` per task (its loss and main metric, train and validation) and, when
    the history has ``cosine/A/B`` columns, ``gradient_conflict.png``, into ``out_dir``
    (created if needed); return the paths. ``mode`` is one of `PLOT_MODES` (``none``: nothing
    is written). ``best_epoch`` (default: `best_epoch_of`) is marked on every curve."""
    if mode not in PLOT_MODES:
        raise TaskmaskError(f"plots: {mode!r}; expected one of {', '.join(PLOT_MODES)}")
    if mode == "none":
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best = best_epoch if best_epoch is not None else best_epoch_of(history)
    paths = [_save([("loss", "total loss")], history, out_dir / "loss.png", best)]
    summary = _save_summary(history, out_dir / "summary.png")
    paths += [summary] if summary is not None else []
    used: set[str] = set()
    for task in history_tasks(history) if mode == "all" else ():
        panels = [(f"{task}/loss", f"{task}: loss")]
        metric = main_metric(history, task)
        if metric is not None:
            panels.append((f"{task}/{metric}", f"{task}: {metric}"))
        paths.append(_save(panels, history, out_dir / f"{_file_stem(task, used)}.png", best))
    cosines = [c for c in history.columns if c.startswith("cosine/")]
    if cosines:
        paths.append(_save_cosines(history, cosines, out_dir / "gradient_conflict.png"))
    return paths
