"""``regression``: 1..k real outputs (e.g. key-point coordinates), each may be missing alone;
the loss is ``task.loss`` (MSE, L1 or Huber); the head starts at the observed mean."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from taskmask.functional._losses import (
    LossTerm,
    masked_huber_loss,
    masked_l1_loss,
    masked_mse_loss,
)
from taskmask.functional._metrics import MetricValue, regression_metrics
from taskmask.tasks._masking import encode_values
from taskmask.tasks._outputs import named_columns
from taskmask.tasks._task import Task, TaskKindSpec


def _mse(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    total = masked_mse_loss(input, target, observed, reduction="sum")
    return LossTerm.over(total, observed)


def _loss(
    task: Task,
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    pos_weight: torch.Tensor | None,
) -> LossTerm:
    if task.loss == "l1":
        total = masked_l1_loss(input, target, observed, reduction="sum")
    elif task.loss == "huber":
        total = masked_huber_loss(input, target, observed, delta=task.huber_delta, reduction="sum")
    else:
        return _mse(input, target, observed)
    return LossTerm.over(total, observed)


def _metrics(
    task: Task, values: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> dict[str, MetricValue]:
    return regression_metrics(values, target.astype(np.float64), observed, names=task.output_names)


def _columns(
    task: Task, values: np.ndarray, decisions: np.ndarray | None, names: list[Any] | None
) -> dict[str, Any]:
    return named_columns("value", task, values)


def observed_mean(task: Task, counts: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """The observed mean of each output ``(k,)`` float32 (0 where nothing is observed)."""
    return (sums / counts.clamp(min=1)).float()


REGRESSION = TaskKindSpec(
    loss=_mse,
    metrics=lambda values, target, observed: regression_metrics(
        values, target, observed, names=[str(j) for j in range(values.shape[1])]
    ),
    summary="mse",
    higher_is_better=False,
    encode=encode_values,
    per_column=True,
    options=frozenset({"loss"}),
    task_loss=_loss,
    task_metrics=_metrics,
    columns=_columns,
    initial_bias=observed_mean,
)
