"""Metrics of one task from its head's output, and which way each metric is better."""

from __future__ import annotations

import numpy as np
import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._metrics import (
    _LOWER_IS_BETTER,
    Array,
    MetricValue,
    binary_metrics,
    multiclass_metrics,
    regression_metrics,
)
from taskmask.tasks._task import Task, get_kind, is_custom, summary_direction


def _custom_metrics(
    task: Task, output: Array, target: Array, seen: Array
) -> dict[str, MetricValue]:
    spec = get_kind(task.kind)
    values = dict(spec.metrics(output, target, seen))
    if spec.summary not in values:
        raise TaskmaskError(
            f"task {task.name!r}: the metrics of kind {task.kind!r} lack its summary "
            f"{spec.summary!r}; got {sorted(values)}"
        )
    return values


def task_metrics(
    task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> dict[str, MetricValue]:
    """Metrics of one task from its head's raw ``output`` (logits, or values for regression).

    Binary / multilabel logits go through a sigmoid and ``task.thresholds()``; multiclass logits
    through a softmax; regression values are used as they are; a user-defined kind's metrics
    get the raw output. Computed in float64.
    """
    out = output.detach().to("cpu", torch.float64)
    y, seen = target.detach().cpu().numpy(), observed.detach().cpu().numpy()
    if is_custom(task.kind):
        return _custom_metrics(task, out.numpy(), y, seen)
    names = task.output_names
    if task.kind == "multiclass":
        return multiclass_metrics(torch.softmax(out, dim=-1).numpy(), y, seen, classes=names)
    if task.kind == "regression":
        return regression_metrics(out.numpy(), y.astype(np.float64), seen, names=names)
    return binary_metrics(
        torch.sigmoid(out).numpy(),
        y.astype(np.float64),
        seen,
        labels=names,
        thresholds=task.thresholds(),
    )


def higher_is_better(metric_name: str) -> bool:
    """False for losses, MSE, MAE and Hamming loss; True for every other metric but the
    summary of a registered kind, which says its own direction.

    A ``/label`` suffix, a ``task.`` prefix and a ``_macro`` suffix are ignored.

    >>> higher_is_better("mse/x"), higher_is_better("task.roc_auc_macro")
    (False, True)
    """
    base = metric_name.split("/", 1)[0].rsplit(".", 1)[-1].removesuffix("_macro")
    declared = summary_direction(base)
    if declared is not None:
        return declared
    return not any(base == name or base.endswith(f"_{name}") for name in _LOWER_IS_BETTER)
