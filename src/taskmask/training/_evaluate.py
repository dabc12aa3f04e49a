"""One evaluation: per-task losses and metrics of a model on labelled data, with their
cross-task means. The API (`taskmask.api.evaluate`), the trainer's validation pass and the
CLI all call `evaluate`; a history row (`Evaluation.row`) and ``metrics.json`` (the
`Evaluation` as a mapping) are views of its result."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from taskmask._world import World
from taskmask.data._memory import MultiTaskData
from taskmask.errors import TaskmaskError
from taskmask.functional._labels import EncodedLabels
from taskmask.functional._metrics import MetricValue, Undefined, metric_as_float, summary_keys
from taskmask.model._heads import HeadOutputs
from taskmask.model._model import MultiTaskModel, raw_outputs
from taskmask.tasks._metrics import task_metrics
from taskmask.tasks._task import Task
from taskmask.training._batch_loss import BatchLoss

__all__ = ["Evaluation", "batch_loss", "evaluate", "kept_evaluation"]


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """bfloat16 autocast for ``precision="bf16"``, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def pos_weights(tasks: tuple[Task, ...], device: torch.device) -> dict[str, torch.Tensor | None]:
    """Each task's ``pos_weight`` as a tensor; an unresolved ``"balanced"`` is an error."""
    weights: dict[str, torch.Tensor | None] = {}
    for task in tasks:
        if task.pos_weight == "balanced":
            raise TaskmaskError(
                f"task {task.name!r}: resolve pos_weight='balanced' before training"
            )
        value = task.pos_weight
        weights[task.name] = (
            None if value is None else torch.tensor(value, dtype=torch.float32, device=device)
        )
    return weights


def batch_loss(
    model: MultiTaskModel, device: torch.device, loss_fns: Mapping[str, Any] | None = None
) -> BatchLoss:
    """The `BatchLoss` of ``model``'s tasks (``loss_fns`` replacing some tasks' losses)."""
    return BatchLoss(
        model.tasks,
        loss_fns=dict(loss_fns or {}),
        pos_weights=pos_weights(model.tasks, device),
        device=device,
        layout=model.layout,
    )


def _summary(values: Mapping[str, MetricValue]) -> dict[str, float]:
    """The defined headline metrics of one task, a ``_macro`` named as its plain metric."""
    out: dict[str, float] = {}
    for key in summary_keys(values):
        value = values[key]
        if key.startswith("n_") or isinstance(value, Undefined) or math.isnan(float(value)):
            continue
        out[key.removesuffix("_macro")] = float(value)
    return out


@dataclass(frozen=True)
class Evaluation(Mapping[str, Mapping[str, MetricValue]]):
    """Per task (by name): its metrics; ``losses``: each task's mean loss over its observed
    labels (NaN where none); ``loss``: their weighted sum (undefined ones left out).
    ``means``: per metric, the mean over the non-auxiliary tasks where it is defined
    (``loss`` included: an unweighted mean of the defined task losses)."""

    tasks: tuple[Task, ...]
    metrics: dict[str, dict[str, MetricValue]]
    losses: dict[str, float]
    loss: float
    means: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        collected: dict[str, list[float]] = {}
        for task in self.tasks:
            if task.auxiliary:
                continue
            loss = self.losses.get(task.name, math.nan)
            summary = _summary(self.metrics.get(task.name, {}))
            if not math.isnan(loss):
                summary["loss"] = loss
            for key, value in summary.items():
                collected.setdefault(key, []).append(value)
        means = {key: sum(values) / len(values) for key, values in collected.items()}
        object.__setattr__(self, "means", means)

    def __getitem__(self, name: str) -> Mapping[str, MetricValue]:
        return self.metrics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def row(self, prefix: str) -> dict[str, float]:
        """History keys: ``{prefix}/<task>/loss``, ``{prefix}/loss``, ``{prefix}/<task>/<metric>``
        and ``{prefix}/mean/<metric>``."""
        row = {f"{prefix}/{name}/loss": value for name, value in self.losses.items()}
        row[f"{prefix}/loss"] = self.loss
        for name, values in self.metrics.items():
            row.update({f"{prefix}/{name}/{k}": metric_as_float(v) for k, v in values.items()})
        row.update({f"{prefix}/mean/{k}": v for k, v in self.means.items()})
        return row


def _total(tasks: tuple[Task, ...], losses: torch.Tensor, weights: torch.Tensor | None) -> float:
    w = weights.cpu() if weights is not None else torch.tensor([t.weight for t in tasks])
    defined = ~torch.isnan(losses.cpu())
    return float((w * torch.where(defined, losses.cpu(), 0.0)).sum())


def assemble(
    tasks: tuple[Task, ...],
    losses: torch.Tensor,
    outputs: Mapping[str, torch.Tensor],
    labels: Mapping[str, EncodedLabels],
    *,
    weights: torch.Tensor | None = None,
    with_metrics: bool = True,
    names: Collection[str] | None = None,
) -> Evaluation:
    """An `Evaluation` from per-task ``losses`` ``(T,)``, outputs and labels (tasks absent
    from ``labels`` get no metrics); ``weights`` (default each task's ``weight``) sum the
    total loss. ``names``: the tasks reported (default all)."""
    if names is not None:
        keep = [i for i, t in enumerate(tasks) if t.name in names]
        index = torch.tensor(keep, dtype=torch.long)
        losses = losses.cpu().index_select(0, index)
        weights = None if weights is None else weights.cpu().index_select(0, index)
        tasks = tuple(tasks[i] for i in keep)
    metrics = {
        task.name: task_metrics(
            task, outputs[task.name], labels[task.name].target, labels[task.name].observed
        )
        for task in tasks
        if with_metrics and task.name in labels
    }
    per_task = {t.name: float(v) for t, v in zip(tasks, losses.tolist(), strict=True)}
    return Evaluation(tasks, metrics, per_task, _total(tasks, losses, weights))


@torch.no_grad()
def evaluate(
    model: MultiTaskModel,
    data: MultiTaskData,
    *,
    plan: BatchLoss | None = None,
    weights: torch.Tensor | None = None,
    world: World | None = None,
    batch_size: int = 1024,
    precision: str = "fp32",
    names: Collection[str] | None = None,
) -> Evaluation:
    """Losses and metrics of ``model`` over all of ``data`` (observed labels only), of the
    tasks in ``names`` (default every task, auxiliary ones too).

    ``plan``: the batch loss (default `batch_loss` of the model); ``data`` must then be
    packed by it (`BatchLoss.pack`). ``world``: under torchrun each process computes the
    outputs of its piece of ``data`` and all get all of them (a collective call).
    """
    device = next(model.parameters()).device
    if plan is None:
        plan = batch_loss(model, device)
        data = plan.pack(data.to(device))
    world = world or World(0, 1, device)
    piece = data.inputs[world.piece(len(data))]
    with autocast(data.inputs.device, precision):
        # raw_outputs needs a row: an empty piece (fewer rows than processes) runs one
        local = raw_outputs(model, piece if len(piece) else data.inputs[:1], batch_size=batch_size)
    outputs = {k: world.gather_rows(v[: len(piece)].float()) for k, v in local.items()}
    sums, counts = plan(outputs, data)
    losses = torch.where(counts > 0, sums / counts.clamp(min=1), float("nan"))
    labels = plan.unpack(data.labels)
    return assemble(model.tasks, losses, outputs, labels, weights=weights, names=names)


def kept_evaluation(
    tasks: tuple[Task, ...],
    plan: BatchLoss,
    world: World,
    losses: torch.Tensor,
    weights: torch.Tensor,
    kept: list[tuple[MultiTaskData, HeadOutputs]],
) -> Evaluation:
    """The training epoch's `Evaluation`: its ``losses``, and metrics over the outputs it
    computed (none if ``kept`` is empty), on every process's pieces of its batches."""
    if not kept:
        return assemble(tasks, losses, {}, {}, weights=weights, with_metrics=False)
    gather = world.gather_rows
    outputs = HeadOutputs.cat([o for _, o in kept]).map(gather)
    seen = [plan.unpack(b.labels) for b, _ in kept]
    labels = {
        name: EncodedLabels(
            gather(torch.cat([s[name].target for s in seen])),
            gather(torch.cat([s[name].observed for s in seen])),
        )
        for name in seen[0]
    }
    return assemble(tasks, losses, outputs, labels, weights=weights)
