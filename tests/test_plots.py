"""Training-curve PNGs: one per task plus the total loss; undefined metrics are gaps, not zeros."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskmask.app.plots import _draw, history_tasks, main_metric, plot_history

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
    assert [p.name for p in paths] == ["loss.png", "task_tox.png", "task_a_b.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_task_names_that_clash_after_cleaning_get_distinct_files(tmp_path: Path) -> None:
    history = pd.DataFrame({"epoch": [1.0], "train/a b/loss": [1.0], "train/a?b/loss": [2.0]})
    names = [p.name for p in plot_history(history, tmp_path)]
    assert len(set(names)) == len(names) == 3


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
    assert (
        plot_history(history.drop(columns=["cosine/a/b", "cosine/a/c"]), tmp_path / "x")[-1].name
        == "loss.png"
    )
