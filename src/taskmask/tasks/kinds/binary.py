"""``binary``: one logit, targets 0/1; probabilities by sigmoid, a decision by threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from taskmask.functional._losses import LossTerm, masked_binary_cross_entropy_with_logits
from taskmask.functional._metrics import MetricValue, binary_metrics
from taskmask.tasks._masking import CLASS_SENTINEL, encode_flags
from taskmask.tasks._task import Decisions, Task, TaskKindSpec


def bce_loss(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    """Masked binary cross-entropy on logits ``(N, k)`` as ``LossTerm(sum, count)``."""
    total = masked_binary_cross_entropy_with_logits(input, target, observed, reduction="sum")
    return LossTerm.over(total, observed)


def weighted_bce_loss(
    task: Task,
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    pos_weight: torch.Tensor | None,
) -> LossTerm:
    """`bce_loss` with the task's resolved ``pos_weight``."""
    total = masked_binary_cross_entropy_with_logits(
        input, target, observed, pos_weight=pos_weight, reduction="sum"
    )
    return LossTerm.over(total, observed)


def flag_metrics(
    task: Task, probs: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> dict[str, MetricValue]:
    """`binary_metrics` per label, at the task's thresholds."""
    labels, thresholds = task.output_names, task.thresholds()
    return binary_metrics(
        probs, target.astype(np.float64), observed, labels=labels, thresholds=thresholds
    )


def indexed_flag_metrics(
    probs: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> dict[str, MetricValue]:
    """`binary_metrics` per column, labels ``0..k-1``, at threshold 0.5 (no task)."""
    k = probs.shape[1]
    return binary_metrics(
        probs, target, observed, labels=[str(j) for j in range(k)], thresholds=[0.5] * k
    )


def sigmoid(task: Task, output: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(output)


def thresholded(task: Task, probs: np.ndarray) -> Decisions:
    """``probs >= threshold`` per label, no names."""
    return probs >= np.asarray(task.thresholds()), None


def _columns(
    task: Task, probs: np.ndarray, decisions: np.ndarray | None, names: list[Any] | None
) -> dict[str, Any]:
    assert decisions is not None
    return {"prob": probs[:, 0], "pred": decisions[:, 0].astype(np.int8)}


def _check(task: Task) -> None:
    if task.labels is not None and len(task.labels) != 1:
        raise ValueError(f"task {task.name!r}: a binary task has exactly one label name")


BINARY = TaskKindSpec(
    loss=bce_loss,
    metrics=indexed_flag_metrics,
    summary="roc_auc",
    width=lambda task: 1,
    encode=encode_flags,
    decisions=thresholded,
    targets="flags",
    sentinel=CLASS_SENTINEL,
    options=frozenset({"pos_weight"}),
    check=_check,
    task_loss=weighted_bce_loss,
    task_metrics=flag_metrics,
    scores=sigmoid,
    columns=_columns,
    packs=True,
    tunes_thresholds=True,
)
