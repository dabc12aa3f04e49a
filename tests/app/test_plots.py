"""Training-curve PNGs: one per task plus the total loss; undefined metrics are gaps, not zeros."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskmask.app.plots import (
    _draw,
    best_epoch_of,
    history_tasks,
    main_metric,
    per_label_columns,
    plot_history,
)

NAN = math.nan


def _history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [1.0, 2.0, 3.0],
            "train/loss": [1.0, 0.8, 0.7],
            "val/loss": [1.1, 0.9, 0.85],
            "train/tox/loss": [0.7, 0.6, 0.5],
            "val/tox/loss": [0.72, 0.65, 0.6],
            "train/tox/roc_auc": [0.6, NAN, 0.8],
            "val/tox/roc_auc": [NAN, NAN, NAN],
            "train/tox/roc_auc/tox": [0.6, NAN, 0.8],
            "train/a b/loss": [0.3, 0.2, 0.1],
            "train/a b/roc_auc": [NAN, NAN, NAN],
            "train/a b/accuracy": [0.5, 0.6, 0.7],
            "weight/tox": [1.0, 1.0, 1.0],
        }
    )


def test_tasks_and_main_metric_come_from_the_columns() -> None:
    history = _history()
    assert history_tasks(history) == ["tox", "a b"]
    assert main_metric(history, "tox") == "roc_auc"
    assert main_metric(history, "a b") == "accuracy"  # roc_auc is never defined there
    assert main_metric(history[["epoch", "train/tox/loss"]], "tox") is None


def test_writes_one_png_per_task_and_the_total_loss(tmp_path: Path) -> None:
    paths = plot_history(_history(), tmp_path / "plots")
    assert [p.name for p in paths] == ["loss.png", "summary.png", "task_tox.png", "task_a_b.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_task_names_that_clash_after_cleaning_get_distinct_files(tmp_path: Path) -> None:
    history = pd.DataFrame({"epoch": [1.0], "train/a b/loss": [1.0], "train/a?b/loss": [2.0]})
    names = [p.name for p in plot_history(history, tmp_path)]
    assert len(set(names)) == len(names) == 4


def test_undefined_metric_values_are_gaps_not_zeros() -> None:
    from matplotlib.figure import Figure

    axes = Figure().subplots()
    _draw(axes, _history(), "tox/roc_auc", "tox")
    train, val = axes.get_lines()
    y = np.asarray(train.get_ydata(), dtype=float)
    assert y[0] == pytest.approx(0.6) and math.isnan(y[1]) and y[2] == pytest.approx(0.8)
    assert np.isnan(np.asarray(val.get_ydata(), dtype=float)).all()


def test_gradient_cosines_get_their_own_plot(tmp_path: Path) -> None:
    history = pd.DataFrame(
        {
            "epoch": [1.0, 2.0, 3.0],
            "train/loss": [1.0, 0.8, 0.7],
            "cosine/a/b": [0.3, float("nan"), -0.1],
            "cosine/a/c": [0.1, 0.2, 0.2],
        }
    )
    paths = plot_history(history, tmp_path)
    conflict = tmp_path / "gradient_conflict.png"
    assert conflict in paths
    assert conflict.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [
        p.name
        for p in plot_history(history.drop(columns=["cosine/a/b", "cosine/a/c"]), tmp_path / "x")
    ] == ["loss.png"]  # no task: no summary either


def _multilabel_history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [1.0, 2.0, 3.0, 4.0],
            "train/loss": [1.0, 0.8, 0.7, 0.6],
            "val/loss": [1.1, 0.9, 0.95, 1.0],
            "val/scene/loss": [0.7, 0.6, 0.6, 0.7],
            "val/scene/roc_auc_macro": [0.6, 0.7, 0.7, 0.7],
            "val/scene/roc_auc/sea": [0.5, 0.6, 0.65, 0.6],
            "val/scene/roc_auc/sun": [0.7, 0.8, 0.75, 0.8],
            "train/scene/roc_auc/sea": [0.5, 0.6, 0.65, 0.6],
        }
    )


def test_a_panel_has_integer_epochs_a_y_label_and_the_best_epoch() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    _draw(axes, _multilabel_history(), "scene/roc_auc_macro", "scene", best_epoch=2)
    figure.canvas.draw()
    assert axes.get_ylabel() == "roc_auc_macro" and axes.get_xlabel() == "epoch"
    ticks = [t for t in axes.get_xticks() if 1 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)
    labels = [line.get_label() for line in axes.get_lines()]
    assert labels == ["val", "val sea", "val sun", "best epoch 2"]
    assert list(axes.get_lines()[-1].get_xdata()) == [2, 2]


def test_per_label_curves_prefer_validation() -> None:
    history = _multilabel_history()
    assert per_label_columns(history, "scene/roc_auc_macro") == [
        "val/scene/roc_auc/sea",
        "val/scene/roc_auc/sun",
    ]
    train_only = history.drop(columns=["val/scene/roc_auc/sea", "val/scene/roc_auc/sun"])
    assert per_label_columns(train_only, "scene/roc_auc_macro") == ["train/scene/roc_auc/sea"]
    assert per_label_columns(history, "scene/loss") == []


def test_the_best_epoch_defaults_to_the_lowest_validation_loss() -> None:
    assert best_epoch_of(_multilabel_history()) == 2
    assert best_epoch_of(_history().drop(columns="val/loss")) is None


def test_the_comparison_is_a_grid_zoomed_to_the_values(tmp_path: Path) -> None:
    from PIL import Image

    from taskmask.app.compare import comparison_figure, plot_comparison

    rows = [
        {"variant": v, "task": t, "metric": m, "mean": mean, "std": 0.005, "n": 3}
        for t in ("a", "b")
        for m in ("accuracy", "roc_auc")
        for v, mean in (("static", 0.98), ("dwa", 1.0))
    ] + [{"variant": "x", "task": "c", "metric": "r2", "mean": 0.5, "std": NAN, "n": 1}]
    summary = pd.DataFrame(rows)
    with Image.open(plot_comparison(summary, tmp_path / "comparison.png")) as image:
        assert image.size == (1260, 680)  # 3 columns x 2 rows of 4.2 x 3.4 inches, 100 dpi
    visible = [ax for ax in comparison_figure(summary).axes if ax.get_visible()]
    assert len(visible) == 5
    first = visible[0]
    low, high = first.get_ylim()
    assert 0.9 < low < 0.975 and 1.005 < high < 1.02  # zoomed to 0.975 .. 1.005, not from 0
    assert (first.get_title(), first.get_ylabel()) == ("a", "accuracy")
    assert [t.get_text() for t in first.get_xticklabels()] == ["static", "dwa"]


def _many_task_history(n_tasks: int) -> pd.DataFrame:
    generator = np.random.default_rng(0)
    columns: dict[str, list[float]] = {"epoch": [1.0, 2.0, 3.0], "val/loss": [3.0, 2.0, 1.0]}
    for t in range(n_tasks):
        for metric in ("loss", "roc_auc"):
            columns[f"train/t{t}/{metric}"] = generator.random(3).tolist()
            columns[f"val/t{t}/{metric}"] = generator.random(3).tolist()
    return pd.DataFrame(columns)


@pytest.mark.parametrize("n_tasks", [3, 40])
def test_the_summary_draws_one_panel_per_metric_lines_or_a_heat_map(
    tmp_path: Path, n_tasks: int
) -> None:
    from taskmask.app.plots import MAX_LINES, summary_panels

    history = _many_task_history(n_tasks)
    panels = summary_panels(history)
    assert list(panels) == ["val/loss", "val/roc_auc"]  # validation, where there is some
    assert [task for task, _ in panels["val/roc_auc"]] == [f"t{t}" for t in range(n_tasks)]
    paths = plot_history(history, tmp_path, mode="summary")
    assert [p.name for p in paths] == ["loss.png", "summary.png"]
    assert (n_tasks > MAX_LINES) == (n_tasks == 40)


def test_plot_modes(tmp_path: Path) -> None:
    history = _many_task_history(2)
    assert plot_history(history, tmp_path / "none", mode="none") == []
    assert not (tmp_path / "none").exists()
    names = [p.name for p in plot_history(history, tmp_path / "all", mode="all")]
    assert names == ["loss.png", "summary.png", "task_t0.png", "task_t1.png"]
    from taskmask.errors import TaskmaskError

    with pytest.raises(TaskmaskError, match="plots: 'some'; expected one of all, summary, none"):
        plot_history(history, tmp_path, mode="some")
