"""Prediction: probabilities or values per task, decisions by threshold, label and class names.

Auxiliary tasks are never predicted. Output column names in `predictions_frame`:
``task.prob`` / ``task.pred`` (binary), ``task.prob.LABEL`` / ``task.pred.LABEL`` / ``task.labels``
(multilabel; ``task.labels`` joins the predicted label names with ``;``), ``task.prob.CLASS`` /
``task.pred`` (multiclass, the class name), ``task.value`` or ``task.value.NAME`` (regression),
``task.rate`` or ``task.rate.NAME`` (count), and for a user-defined kind (`taskmask.tasks`)
what its spec's ``columns`` give, by default ``task.output`` or ``task.output.NAME`` and, when
it decides, ``task.pred`` or ``task.pred.NAME``. Task names and labels may hold '.'; two tasks
that would write one column are an error naming both (`taskmask.tasks.check_column_names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from taskmask.data._memory import MultiTaskData, as_inputs
from taskmask.errors import TaskmaskError
from taskmask.functional._thresholds import Objective, fit_thresholds_by, parse_objective
from taskmask.model._model import MultiTaskModel, raw_outputs
from taskmask.tasks._outputs import (
    check_column_names,
    prediction_columns,
    task_decisions,
    task_scores,
)
from taskmask.tasks._task import Task


@dataclass(frozen=True)
class TaskPrediction:
    """One task's predictions for N rows.

    ``scores``: probabilities ``(N, k)`` (binary k=1, multilabel, multiclass), values
    ``(N, k)`` (regression), rates (count), what a user-defined kind's ``scores`` give (by
    default the head's outputs). ``decisions``: bool ``(N, k)`` (binary / multilabel), class
    indices ``(N,)`` (multiclass), ``None`` (regression, count), what a user-defined kind
    decides (``None`` without ``decide``).
    ``names``: per row the predicted label names (multilabel, a list per row) or the class
    name (multiclass); ``None`` otherwise.
    """

    task: Task
    scores: np.ndarray
    decisions: np.ndarray | None
    names: list[Any] | None


def _task_prediction(task: Task, output: torch.Tensor) -> TaskPrediction:
    scores = task_scores(task, output.detach().float().cpu())
    decisions, names = task_decisions(task, scores)
    return TaskPrediction(task, scores, decisions, names)


def predict(
    model: MultiTaskModel, inputs: Any, *, batch_size: int = 4096
) -> dict[str, TaskPrediction]:
    """Predictions for every non-auxiliary task, keyed by task name."""
    tensor = as_inputs(inputs, source="prediction inputs", names=model.feature_names)
    outputs = raw_outputs(model, tensor, batch_size=batch_size)
    return {
        task.name: _task_prediction(task, outputs[task.name])
        for task in model.tasks
        if not task.auxiliary
    }


def predictions_frame(predictions: Mapping[str, TaskPrediction]) -> pd.DataFrame:
    """One column per output (see the module docstring for the names)."""
    parts = {
        name: prediction_columns(pred.task, pred.scores, pred.decisions, pred.names)
        for name, pred in predictions.items()
    }
    check_column_names(parts)  # task names and labels may hold '.'
    columns = {f"{name}.{s}": values for name, cols in parts.items() for s, values in cols.items()}
    return pd.DataFrame(columns)


def tune_thresholds(
    model: MultiTaskModel, data: MultiTaskData, *, objective: str | Objective = "f1"
) -> MultiTaskModel:
    """Set the per-label thresholds of each task whose kind tunes them (binary, multilabel) to
    those ``objective`` picks on its scores on ``data`` (observed labels only; use validation
    data, never the test set): ``f1``, ``youden``, ``precision:0.9``, ``recall:0.8``
    (`taskmask.functional._thresholds`). Returns ``model``."""
    if not isinstance(objective, Objective):
        objective = parse_objective(objective, where="tune_thresholds objective")
    outputs = raw_outputs(model, data.inputs)
    tasks = []
    for task in model.tasks:
        if task.spec.tunes_thresholds and task.name in data.labels:
            enc = data.labels[task.name]
            scores = torch.as_tensor(task_scores(task, outputs[task.name].detach().cpu()))
            target, observed = enc.target.cpu(), enc.observed.cpu()
            shape = scores.shape
            thresholds = fit_thresholds_by(
                scores, target.reshape(shape), observed.reshape(shape), objective
            )
            task = task.model_copy(update={"threshold": tuple(thresholds.tolist())})
        tasks.append(task)
    model.tasks = tuple(tasks)
    return model


def with_thresholds(model: MultiTaskModel, thresholds: Mapping[str, Any]) -> MultiTaskModel:
    """Set thresholds by task name: one probability in [0, 1], or one per label. Returns
    ``model``; a bad value is a `TaskmaskError` naming the task, and changes no task."""
    unknown = sorted(set(thresholds) - set(model.task_names))
    if unknown:
        raise TaskmaskError(f"thresholds for unknown tasks {unknown}")
    tasks = []
    for task in model.tasks:
        if task.name in thresholds:
            value = thresholds[task.name]
            value = tuple(value) if isinstance(value, list | tuple) else value
            task = Task(**{**task.model_dump(), "threshold": value})
            task.thresholds()
        tasks.append(task)
    model.tasks = tuple(tasks)
    return model
