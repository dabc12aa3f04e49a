"""``count``: Poisson regression with a log link. The head outputs log-rates ``(N, k)``; the
loss is the masked Poisson negative log-likelihood; predictions and metrics read the rate
``exp(output)``; metrics are the mean Poisson deviance and the MAE of the rate. Labels are
non-negative integers or missing (NaN / None / blank / ``sentinel``); another number is an
error naming the task, the output and the row. The head's bias starts at the log of each
output's observed mean count."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._labels import EncodedLabels
from taskmask.functional._losses import LossTerm, masked_poisson_nll_loss
from taskmask.functional._metrics import MetricValue, count_metrics
from taskmask.tasks._masking import encode_values
from taskmask.tasks._outputs import named_columns
from taskmask.tasks._task import Task, TaskKindSpec

SMALLEST_MEAN = 1e-6
"""The starting rate of an output whose observed counts are all 0 (its bias is log of this)."""


def poisson_loss(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    """Masked Poisson NLL of log-rates ``(N, k)`` as ``LossTerm(sum, count)``."""
    total = masked_poisson_nll_loss(input, target, observed, reduction="sum")
    return LossTerm.over(total, observed)


def encode_counts(task: Task, raw: Any, where: str) -> EncodedLabels:
    """`encode_values`, then every observed count must be a non-negative integer."""
    encoded = encode_values(task, raw, where)
    target, observed = encoded.target, encoded.observed
    bad = observed & ((target < 0) | (target != target.round()))
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        names = task.output_names
        label = names[col] if col < len(names) else col
        raise TaskmaskError(
            f"{where}: count {label} has value {float(target[row, col]):g} at row {row}; "
            "expected a non-negative integer or missing"
        )
    return encoded


def _metrics(
    task: Task, rates: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> dict[str, MetricValue]:
    return count_metrics(rates, target.astype(np.float64), observed, names=task.output_names)


def _rate(task: Task, output: torch.Tensor) -> torch.Tensor:
    return torch.exp(output)


def _columns(
    task: Task, rates: np.ndarray, decisions: np.ndarray | None, names: list[Any] | None
) -> dict[str, Any]:
    return named_columns("rate", task, rates)


def log_mean(task: Task, counts: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """``log`` of each output's observed mean count (at least `SMALLEST_MEAN`); 0 (rate 1)
    where nothing is observed."""
    mean = sums / counts.clamp(min=1)
    start = torch.log(mean.clamp(min=SMALLEST_MEAN))
    return torch.where(counts > 0, start, 0.0).float()


COUNT = TaskKindSpec(
    loss=poisson_loss,
    metrics=lambda rates, target, observed: count_metrics(
        rates, target, observed, names=[str(j) for j in range(rates.shape[1])]
    ),
    summary="poisson_deviance",
    higher_is_better=False,
    encode=encode_counts,
    per_column=True,
    task_metrics=_metrics,
    scores=_rate,
    columns=_columns,
    initial_bias=log_mean,
    lower_is_better=("poisson_deviance", "mae"),
)
