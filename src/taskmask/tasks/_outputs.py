"""What a task's kind makes of its head's outputs and of its training labels: scores,
decisions, prediction columns, label sums and the head's starting bias. Each function reads
the kind's hook and falls back to a default that suits any kind.

A prediction column is named ``<task>.<suffix>`` (``tox.prob``, ``colour.prob.red``). Task
names and labels may hold '.', so two tasks could name one column (task ``a.b`` with label
``c`` and task ``a`` with label ``b.c``); `check_column_names` refuses that, naming both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._labels import EncodedLabels
from taskmask.tasks._task import Decisions, Task


def task_scores(task: Task, output: torch.Tensor) -> np.ndarray:
    """The kind's ``scores`` of a head output (probabilities, rates; default the output
    itself), as a numpy array of the output's dtype."""
    scores = task.spec.scores
    return (output if scores is None else scores(task, output)).numpy()


def task_decisions(task: Task, scores: np.ndarray) -> Decisions:
    """``(decisions, names)``: the kind's ``decisions``, else its ``decide`` (no names), else
    ``scores >= task.thresholds()`` for a kind that tunes thresholds, else none."""
    spec = task.spec
    if spec.decisions is not None:
        return spec.decisions(task, scores)
    if spec.decide is not None:
        return spec.decide(scores), None
    if spec.tunes_thresholds:
        return scores >= np.asarray(task.thresholds()), None
    return None, None


def _output_columns(
    task: Task, scores: np.ndarray, decisions: np.ndarray | None, names: list[Any] | None
) -> dict[str, Any]:
    """``output`` (one output) or ``output.NAME``; the same with ``pred``."""
    columns: dict[str, Any] = {}
    for part, values in (("output", scores), ("pred", decisions)):
        if values is None:
            continue
        values = np.asarray(values).reshape(len(values), -1)
        if values.shape[1] == 1:
            columns[part] = values[:, 0]
        else:
            outputs = task.output_names
            keys = outputs if len(outputs) == values.shape[1] else range(values.shape[1])
            columns.update({f"{part}.{n}": values[:, j] for j, n in enumerate(keys)})
    return columns


def prediction_columns(
    task: Task, scores: np.ndarray, decisions: np.ndarray | None, names: list[Any] | None
) -> dict[str, Any]:
    """The task's prediction columns keyed by suffix (``prob.sea``, ``pred``): the kind's
    ``columns``, by default ``output`` / ``output.NAME`` and ``pred`` / ``pred.NAME``."""
    columns = task.spec.columns or _output_columns
    return columns(task, scores, decisions, names)


def check_column_names(suffixes: Mapping[str, Iterable[str]]) -> None:
    """Raise if two tasks would write one prediction column ``<task>.<suffix>``; ``suffixes``
    maps each task name to its columns' suffixes."""
    owners: dict[str, str] = {}
    for name, parts in suffixes.items():
        for suffix in parts:
            column = f"{name}.{suffix}"
            owner = owners.setdefault(column, name)
            if owner != name:
                raise TaskmaskError(
                    f"tasks {owner!r} and {name!r} would both write the prediction column "
                    f"{column!r} (columns are <task>.<suffix>); rename one of the tasks"
                )


def check_prediction_columns(tasks: Sequence[Task]) -> None:
    """`check_column_names` for the predicted tasks before any training: the columns their
    kinds give for one zero output row. A task whose kind brings its own head (its output shape
    is the head's) is checked when predictions are written instead."""
    suffixes: dict[str, Iterable[str]] = {}
    for task in tasks:
        if not task.auxiliary and task.spec.head is None:
            scores = task_scores(task, torch.zeros(1, task.width, device="cpu"))  # names only
            decisions, names = task_decisions(task, scores)
            suffixes[task.name] = prediction_columns(task, scores, decisions, names).keys()
    check_column_names(suffixes)


def named_columns(prefix: str, task: Task, values: np.ndarray) -> dict[str, Any]:
    """``prefix`` for one output, else ``prefix.NAME`` per output name."""
    if values.shape[1] == 1:
        return {prefix: values[:, 0]}
    return {f"{prefix}.{out}": values[:, j] for j, out in enumerate(task.output_names)}


def label_sums(task: Task, labels: EncodedLabels, n_rows: int) -> torch.Tensor:
    """Per output, float64: the observed rows of each class (``targets="classes"``), else the
    sum of the observed targets (the positives of flags)."""
    if task.spec.targets == "classes":
        return torch.bincount(labels.target[labels.observed], minlength=task.width).double()
    observed = labels.observed.reshape(n_rows, -1)
    target = labels.target.reshape(n_rows, -1).double()
    return torch.where(observed, target, 0.0).sum(0)


def initial_bias(task: Task, counts: torch.Tensor, sums: torch.Tensor) -> torch.Tensor | None:
    """The kind's starting bias of the task's head from the training labels' observed
    ``counts`` and ``sums`` (`label_sums`), or None to keep the initialised one."""
    start = task.spec.initial_bias
    return None if start is None else start(task, counts, sums)
