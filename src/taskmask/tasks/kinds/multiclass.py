"""``multiclass``: a k-way softmax over named classes; targets are class names or indices."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from taskmask.functional._losses import LossTerm, masked_cross_entropy
from taskmask.functional._metrics import MetricValue, multiclass_metrics
from taskmask.tasks._masking import CLASS_SENTINEL, encode_classes
from taskmask.tasks._task import Decisions, Task, TaskKindSpec
from taskmask.tasks.kinds.multilabel import indexed_labels


def _loss(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    total = masked_cross_entropy(input, target, observed, reduction="sum")
    return LossTerm.over(total, observed)


def _metrics(
    task: Task, probs: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> dict[str, MetricValue]:
    return multiclass_metrics(probs, target, observed, classes=task.output_names)


def _softmax(task: Task, output: torch.Tensor) -> torch.Tensor:
    return torch.softmax(output, dim=-1)


def _decisions(task: Task, probs: np.ndarray) -> Decisions:
    index = probs.argmax(axis=1)
    return index, list(np.asarray(task.output_names, dtype=object)[index])


def _columns(
    task: Task, probs: np.ndarray, decisions: np.ndarray | None, names: list[Any] | None
) -> dict[str, Any]:
    columns: dict[str, Any] = {f"prob.{c}": probs[:, j] for j, c in enumerate(task.output_names)}
    columns["pred"] = names
    return columns


def _check(task: Task) -> None:
    if task.labels is not None and len(task.labels) < 2:
        raise ValueError(f"task {task.name!r}: a multiclass task needs at least 2 classes")


MULTICLASS = TaskKindSpec(
    loss=_loss,
    metrics=lambda probs, target, observed: multiclass_metrics(
        probs, target, observed, classes=[str(c) for c in range(probs.shape[1])]
    ),
    summary="accuracy",
    width=lambda task: len(indexed_labels(task)),
    output_names=indexed_labels,
    encode=encode_classes,
    decisions=_decisions,
    targets="classes",
    sentinel=CLASS_SENTINEL,
    check=_check,
    task_metrics=_metrics,
    scores=_softmax,
    columns=_columns,
)
