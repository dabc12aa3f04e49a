"""Prediction: probabilities or values per task, decisions by threshold, label and class names.

Auxiliary tasks are never predicted. Output column names in `predictions_frame`:
``task.prob`` / ``task.pred`` (binary), ``task.prob.LABEL`` / ``task.pred.LABEL`` / ``task.labels``
(multilabel; ``task.labels`` joins the predicted label names with ``;``), ``task.prob.CLASS`` /
``task.pred`` (multiclass, the class name), ``task.value`` or ``task.value.NAME`` (regression),
``task.output`` or ``task.output.NAME`` and, when its kind decides, ``task.pred`` or
``task.pred.NAME`` (a user-defined kind, `taskmask.tasks`).
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
from taskmask.functional._metrics import fit_thresholds
from taskmask.model._model import MultiTaskModel, raw_outputs
from taskmask.tasks._task import Task, get_kind, is_custom


@dataclass(frozen=True)
class TaskPrediction:
    """One task's predictions for N rows.

    ``scores``: probabilities ``(N, k)`` (binary k=1, multilabel, multiclass) or values
    ``(N, k)`` (regression; a user-defined kind: the head's outputs). ``decisions``: bool
    ``(N, k)`` (binary / multilabel), class indices ``(N,)`` (multiclass), ``None``
    (regression), what the kind's ``decide`` returns (a user-defined kind; ``None`` without).
    ``names``: per row the predicted label names (multilabel, a list per row) or the class
    name (multiclass); ``None`` otherwise.
    """

    task: Task
    scores: np.ndarray
    decisions: np.ndarray | None
    names: list[Any] | None


def _task_prediction(task: Task, output: torch.Tensor) -> TaskPrediction:
    output = output.detach().float().cpu()
    if is_custom(task.kind):
        decide = get_kind(task.kind).decide
        scores = output.numpy()
        return TaskPrediction(task, scores, None if decide is None else decide(scores), None)
    if task.kind == "regression":
        return TaskPrediction(task, output.numpy(), None, None)
    if task.kind == "multiclass":
        probs = torch.softmax(output, dim=1).numpy()
        index = probs.argmax(axis=1)
        labels = np.asarray(task.output_names, dtype=object)
        return TaskPrediction(task, probs, index, list(labels[index]))
    probs = torch.sigmoid(output).numpy()
    decisions = probs >= np.asarray(task.thresholds())
    if task.kind == "binary":
        return TaskPrediction(task, probs, decisions, None)
    names_of = task.output_names
    names = [[names_of[j] for j in np.flatnonzero(row)] for row in decisions]
    return TaskPrediction(task, probs, decisions, names)


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
    columns: dict[str, Any] = {}
    for name, pred in predictions.items():
        task = pred.task
        outputs = task.output_names
        if is_custom(task.kind):
            columns.update(_custom_columns(name, outputs, pred))
        elif task.kind == "regression":
            if pred.scores.shape[1] == 1:
                columns[f"{name}.value"] = pred.scores[:, 0]
            for j, out in enumerate(outputs if pred.scores.shape[1] > 1 else ()):
                columns[f"{name}.value.{out}"] = pred.scores[:, j]
        elif task.kind == "binary":
            assert pred.decisions is not None
            columns[f"{name}.prob"] = pred.scores[:, 0]
            columns[f"{name}.pred"] = pred.decisions[:, 0].astype(np.int8)
        else:
            for j, out in enumerate(outputs):
                columns[f"{name}.prob.{out}"] = pred.scores[:, j]
            if task.kind == "multiclass":
                columns[f"{name}.pred"] = pred.names
            else:
                assert pred.decisions is not None and pred.names is not None
                for j, out in enumerate(outputs):
                    columns[f"{name}.pred.{out}"] = pred.decisions[:, j].astype(np.int8)
                columns[f"{name}.labels"] = [";".join(row) for row in pred.names]
    return pd.DataFrame(columns)


def _custom_columns(name: str, outputs: tuple[str, ...], pred: TaskPrediction) -> dict[str, Any]:
    """``name.output`` (one output) or ``name.output.NAME``; the same with ``pred``."""
    columns: dict[str, Any] = {}
    for part, values in (("output", pred.scores), ("pred", pred.decisions)):
        if values is None:
            continue
        values = np.asarray(values).reshape(len(values), -1)
        if values.shape[1] == 1:
            columns[f"{name}.{part}"] = values[:, 0]
        else:
            names = outputs if len(outputs) == values.shape[1] else range(values.shape[1])
            columns.update({f"{name}.{part}.{n}": values[:, j] for j, n in enumerate(names)})
    return columns


def tune_thresholds(model: MultiTaskModel, data: MultiTaskData) -> MultiTaskModel:
    """Set each binary / multilabel task's per-label thresholds to maximise F1 on ``data``
    (observed labels only; use validation data, never the test set). Returns ``model``."""
    outputs = raw_outputs(model, data.inputs)
    tasks = []
    for task in model.tasks:
        if task.kind in ("binary", "multilabel") and task.name in data.labels:
            enc = data.labels[task.name]
            probs = torch.sigmoid(outputs[task.name]).cpu().numpy()
            thresholds = fit_thresholds(probs, enc.target.cpu().numpy(), enc.observed.cpu().numpy())
            task = task.model_copy(update={"threshold": tuple(float(t) for t in thresholds)})
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
