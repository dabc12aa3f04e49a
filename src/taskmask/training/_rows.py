"""The rows of a training history: per-task losses, their weighted total, and metrics."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from taskmask._world import World
from taskmask.data._memory import MultiTaskData
from taskmask.functional._metrics import metric_as_float
from taskmask.model._heads import HeadOutputs
from taskmask.tasks._metrics import task_metrics
from taskmask.tasks._task import Task
from taskmask.training._batch_loss import BatchLoss


def kept_metrics(
    prefix: str,
    tasks: tuple[Task, ...],
    plan: BatchLoss,
    world: World,
    kept: list[tuple[MultiTaskData, HeadOutputs]],
) -> dict[str, float]:
    """Metrics over the outputs an epoch computed, on every process's pieces of its batches."""
    gather = world.gather_rows
    outputs = HeadOutputs.cat([o for _, o in kept]).map(gather)
    seen = [plan.unpack(b.labels) for b, _ in kept]
    labels = {
        name: (
            gather(torch.cat([s[name].target for s in seen])),
            gather(torch.cat([s[name].observed for s in seen])),
        )
        for name in seen[0]
    }
    return metric_row(prefix, tasks, outputs, labels)


def loss_row(
    prefix: str, tasks: tuple[Task, ...], losses: torch.Tensor, weights: torch.Tensor | None
) -> dict[str, float]:
    row = {f"{prefix}/{t.name}/loss": float(v) for t, v in zip(tasks, losses.tolist(), strict=True)}
    w = weights.cpu() if weights is not None else torch.tensor([t.weight for t in tasks])
    defined = ~torch.isnan(losses.cpu())
    row[f"{prefix}/loss"] = float((w * torch.where(defined, losses.cpu(), 0.0)).sum())
    return row


def metric_row(
    prefix: str,
    tasks: tuple[Task, ...],
    outputs: Mapping[str, torch.Tensor],
    labels: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, float]:
    row: dict[str, float] = {}
    for task in tasks:
        if task.name not in labels:
            continue
        target, observed = labels[task.name]
        metrics = task_metrics(task, outputs[task.name], target, observed)
        row.update({f"{prefix}/{task.name}/{k}": metric_as_float(v) for k, v in metrics.items()})
    return row
