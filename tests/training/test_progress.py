"""What a run logs through the ``taskmask`` logger: a line per epoch (or every N) when there is
no bar, the resumed epoch, and when early stopping stopped and which epoch it restored."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from test_resume import BASE
from training_script import train

from taskmask.training._progress import EpochReporter, epoch_line


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskmask"]


def test_one_line_per_epoch_with_the_headline_figures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskmask")
    train("run", tmp_path, {**BASE, "epochs": 3, "validation_split": 0.2})
    lines = _lines(caplog)
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    pattern = r"epoch 1/3  train/loss [\d.]+  val/loss [\d.]+  lr 0\.01  [\d.]+s"
    assert re.fullmatch(pattern, lines[0]), lines[0]


def test_log_every_n_epochs_and_the_last(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskmask")
    train("run", tmp_path, {**BASE, "epochs": 5, "log_every": 2})
    assert [line.split()[1] for line in _lines(caplog)] == ["2/5", "4/5", "5/5"]


def test_nothing_is_logged_below_info_level_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taskmask")
    train("run", tmp_path, {**BASE, "epochs": 2})
    assert _lines(caplog) == []


def test_resume_says_from_which_epoch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = {**BASE, "checkpoint_dir": str(tmp_path / "ckpt")}
    train("first", tmp_path, {**config, "epochs": 2})
    caplog.set_level(logging.INFO, logger="taskmask")
    train("again", tmp_path, {**config, "epochs": 3}, resume=True)
    lines = _lines(caplog)
    assert lines[0] == f"{tmp_path / 'ckpt' / 'checkpoint.json'}: epoch 2 of 3 done; resuming"
    assert [line.split()[1] for line in lines[1:]] == ["3/3"]


def test_early_stopping_says_when_and_which_epoch_it_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskmask")
    config = {**BASE, "validation_split": 0.3, "epochs": 30, "lr": 0.3, "log_every": 100}
    config["early_stopping"] = {"patience": 1, "min_delta": 0.5}
    _, history = train("stopped", tmp_path, config)
    *epochs, event = _lines(caplog)
    last = len(history)
    best = history[0]
    for row in history:
        best = row if row["val/loss"] < best["val/loss"] - 0.5 else best
    assert last < 30 and epochs == [epoch_line(history[-1], 30, "val/loss")]
    assert event == (
        f"early stopping at epoch {last}: val/loss did not improve by more than 0.5 for 1 "
        f"epoch; restored the weights of epoch {int(best['epoch'])} "
        f"(val/loss {best['val/loss']:.4g})"
    )


def test_a_line_shows_the_monitored_metric_and_nan() -> None:
    row = {"epoch": 4.0, "train/loss": 0.5, "val/loss": float("nan"), "val/b/roc_auc": 0.91234}
    assert epoch_line(row, 10, "val/b/roc_auc") == (
        "epoch 4/10  train/loss 0.5  val/loss nan  val/b/roc_auc 0.9123"
    )


def test_the_bar_shows_the_total_losses_only_and_logs_no_lines(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskmask")
    reporter = EpochReporter(epochs=3, show_bar=True, log_every=1, monitor=None, enabled=True)
    for epoch in reporter.epochs_of(0, 3):
        row = {"epoch": float(epoch), "train/loss": 0.5, "val/loss": 0.25}
        row |= {f"train/task{i}/loss": 1.0 for i in range(20)}
        reporter.end_epoch(row, stopped=False)
    bar = capsys.readouterr().err.split("\r")[-1]
    assert "3/3" in bar and "train=0.5, val=0.25" in bar and "task" not in bar
    assert _lines(caplog) == []
