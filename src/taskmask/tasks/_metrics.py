"""Metrics of one task from its head's output, and which way each metric is better."""

from __future__ import annotations

import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._metrics import _LOWER_IS_BETTER, MetricValue
from taskmask.tasks._outputs import task_scores
from taskmask.tasks._registry import metric_direction
from taskmask.tasks._task import Task


def task_metrics(
    task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> dict[str, MetricValue]:
    """Metrics of one task from its head's raw ``output``, in float64: the kind's ``scores``
    (probabilities, rates; default the output) go to its ``task_metrics`` or ``metrics``,
    which must return its ``summary`` key (or that key's ``_macro``)."""
    scores = task_scores(task, output.detach().to("cpu", torch.float64))
    y, seen = target.detach().cpu().numpy(), observed.detach().cpu().numpy()
    spec = task.spec
    if spec.task_metrics is not None:
        values = dict(spec.task_metrics(task, scores, y, seen))
    else:
        values = dict(spec.metrics(scores, y, seen))
    if spec.summary not in values and f"{spec.summary}_macro" not in values:
        raise TaskmaskError(
            f"task {task.name!r}: the metrics of kind {task.kind!r} lack its summary "
            f"{spec.summary!r}; got {sorted(values)}"
        )
    return values


def higher_is_better(metric_name: str) -> bool:
    """As a registered kind declares it (its summary's direction, its ``lower_is_better``);
    else False for losses, MSE, MAE and Hamming loss, True for every other metric.

    A ``/label`` suffix, a ``task.`` prefix and a ``_macro`` suffix are ignored.

    >>> higher_is_better("mse/x"), higher_is_better("task.roc_auc_macro")
    (False, True)
    """
    base = metric_name.split("/", 1)[0].rsplit(".", 1)[-1].removesuffix("_macro")
    declared = metric_direction(base)
    if declared is not None:
        return declared
    return not any(base == name or base.endswith(f"_{name}") for name in _LOWER_IS_BETTER)
