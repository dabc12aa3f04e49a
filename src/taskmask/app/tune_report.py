"""A study's trials as a table (``trials.csv``), a figure (``tune.png``) and lines of text, for
`taskmask.app.tune`. matplotlib's Agg canvas only, imported when a figure is drawn."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from taskmask._io import write_atomically

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


def trials_table(trials: Sequence[FrozenTrial], params: Sequence[str]) -> pd.DataFrame:
    """One row per trial: ``number``, ``state``, ``value`` (completed trials only),
    ``epochs`` trained, ``epoch`` kept, ``seconds``, then each parameter in ``params``."""
    rows = []
    for trial in trials:
        complete = trial.state.name == "COMPLETE"
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value if complete else math.nan,
            "epochs": trial.user_attrs.get("epochs"),
            "epoch": trial.user_attrs.get("epoch"),
            "seconds": None if trial.duration is None else trial.duration.total_seconds(),
        }
        row.update({name: trial.params.get(name) for name in params})
        rows.append(row)
    columns = ["number", "state", "value", "epochs", "epoch", "seconds", *params]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"epochs": "Int64", "epoch": "Int64"})  # blank where there is none


def plot_study(
    trials: Sequence[FrozenTrial],
    shown: Mapping[str, float | None],
    path: Path,
    *,
    monitor: str,
    maximize: bool,
    log_scale: Set[str] = frozenset(),
) -> Path:
    """The objective against the trial number (completed trials, the best so far, pruned
    trials at their last reported value), then against each parameter in ``shown`` (its
    importance in the title when known; a log axis for those in ``log_scale``); the best so
    far is the largest value with ``maximize``, else the smallest."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    figure = Figure(figsize=(4.5 * (1 + len(shown)), 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 1 + len(shown), squeeze=False)[0]
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.intermediate_values]
    _draw_trials(axes[0], complete, pruned, monitor, maximize=maximize)
    for ax, (name, importance) in zip(axes[1:], shown.items(), strict=True):
        values = [t.params[name] for t in complete]
        if any(isinstance(v, str | bool) or v is None for v in values):
            values = [str(v) for v in values]  # categorical: one tick per choice
        ax.scatter(values, [t.value for t in complete])
        if name in log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
        ax.set_xlabel(name)
        ax.set_ylabel(monitor)
        ax.set_title(name if importance is None else f"{name} (importance {importance:.2f})")
    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    return path


def _draw_trials(
    ax: Any,
    complete: Sequence[FrozenTrial],
    pruned: Sequence[FrozenTrial],
    monitor: str,
    *,
    maximize: bool,
) -> None:
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="grey", label="pruned")
    if complete:
        numbers, values = [t.number for t in complete], [t.value for t in complete]
        ax.scatter(numbers, values, label="completed")
        best = pd.Series(values).cummax() if maximize else pd.Series(values).cummin()
        ax.step(numbers, best.to_numpy(), where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(monitor)
    ax.set_title("objective")
    if complete or pruned:
        ax.legend()


def trial_line(trial: FrozenTrial, monitor: str) -> str:
    """``trial 3: val/loss = 0.4123 at epoch 7 (training.lr=0.0031, ...)``."""
    values = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    if trial.state.name == "COMPLETE" and trial.value is not None:
        what = f"{monitor} = {trial.value:.4g} at epoch {trial.user_attrs.get('epoch')}"
    elif trial.state.name == "PRUNED":
        what = f"pruned after epoch {trial.user_attrs.get('epochs')}"
    else:
        what = trial.state.name.lower()
    return f"trial {trial.number}: {what} ({values})"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
