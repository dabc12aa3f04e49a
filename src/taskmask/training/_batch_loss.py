"""Per-task loss sums and observed counts of a batch, computed with as few kernels as possible.

Binary and multilabel tasks that use the default loss (masked BCE, ``missing_labels="ignore"``)
are packed into one ``(N, K)`` block once per data set (`BatchLoss.pack`), so that a batch
gathers one block instead of two tensors per task and their masked BCE runs as one kernel;
every other task goes through its own loss. Given the model's `HeadLayout`, the packed columns
follow the model's output blocks (`HeadOutputs`), whose logits are then read as whole blocks
(or one column selection per block) instead of concatenated task by task. The result is the
same per-task ``(sum, count)`` as `taskmask.tasks.task_loss` (up to summation order in the
last bits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from taskmask.data._memory import MultiTaskData
from taskmask.functional._labels import EncodedLabels
from taskmask.functional._losses import LossTerm, masked_binary_cross_entropy_with_logits
from taskmask.model._heads import HeadLayout, HeadOutputs
from taskmask.tasks._loss import task_loss
from taskmask.tasks._task import Task

LossFn = Callable[[Task, torch.Tensor, torch.Tensor, torch.Tensor], LossTerm]

PACKED = "\x00packed"
"""Key of the packed block in a packed `MultiTaskData` (no task name can contain NUL)."""


def _ones_if_none(weight: torch.Tensor | None, width: int) -> torch.Tensor:
    return torch.ones(width) if weight is None else weight.detach().cpu().reshape(width)


class BatchLoss:
    """``batch_loss(outputs, batch) -> (sums, counts)``, each ``(n_tasks,)`` in task order;
    ``sums`` is differentiable; a task absent from the batch has sum and count 0.
    ``epochs_done`` (the trainer sets it before each epoch, resumed runs included) is passed to
    `task_loss`: ``missing_labels="large_loss_rejection"`` reads it."""

    def __init__(
        self,
        tasks: Sequence[Task],
        *,
        loss_fns: Mapping[str, LossFn],
        pos_weights: Mapping[str, torch.Tensor | None],
        device: torch.device,
        layout: HeadLayout | None = None,
    ) -> None:
        self.tasks = tuple(tasks)
        self.loss_fns = loss_fns
        self.pos_weights = pos_weights
        self.layout = layout
        self.epochs_done = 0  # full training epochs before this batch: the trainer sets it
        by_name = {t.name: t for t in self.tasks}
        order = [by_name[n] for g in layout.groups for n in g.names] if layout else self.tasks
        packable = [
            t
            for t in order
            if t.spec.packs
            and t.missing_labels == "ignore"  # other strategies are not a plain masked BCE
            and t.name not in loss_fns
        ]
        self.packed = packable if len(packable) > 1 else []
        names = {t.name for t in self.packed}
        self.single = [(i, t) for i, t in enumerate(self.tasks) if t.name not in names]
        self.widths = [t.width for t in self.packed]
        index = {t.name: i for i, t in enumerate(self.tasks)}
        self.column_task = torch.tensor(
            [index[t.name] for t in self.packed for _ in range(t.width)],
            dtype=torch.long,
            device=device,
        )
        self.single_task = torch.tensor(
            [i for i, _ in self.single], dtype=torch.long, device=device
        )
        weights = [pos_weights[t.name] for t in self.packed]
        self.pos_weight = None
        if any(w is not None for w in weights):
            filled = [_ones_if_none(w, t.width) for w, t in zip(weights, self.packed, strict=True)]
            self.pos_weight = torch.cat(filled).to(device)
        self.pieces = self._pieces(device)

    def _pieces(self, device: torch.device) -> list[tuple[int, torch.Tensor | None]]:
        """Per output block holding packed tasks: its index and the packed columns in it
        (``None``: all of them), in packed order."""
        if self.layout is None or not self.packed:
            return []
        names = {t.name for t in self.packed}
        pieces: list[tuple[int, torch.Tensor | None]] = []
        for index, group in enumerate(self.layout.groups):
            columns: list[int] = []
            for name in group.names:
                if name in names:
                    _, start, width = self.layout.where[name]
                    columns.extend(range(start, start + width))
            if columns:
                whole = len(columns) == group.width
                kept = None if whole else torch.tensor(columns, dtype=torch.long, device=device)
                pieces.append((index, kept))
        return pieces

    def _packed_logits(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The packed tasks' logits ``(N, K)``: from whole output blocks when ``outputs``
        has this plan's layout, else task by task."""
        if isinstance(outputs, HeadOutputs) and self.pieces and outputs.layout is self.layout:
            parts = [
                outputs.blocks[i] if kept is None else outputs.blocks[i].index_select(1, kept)
                for i, kept in self.pieces
            ]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return torch.cat([outputs[t.name] for t in self.packed], dim=1)

    def pack(self, data: MultiTaskData) -> MultiTaskData:
        """``data`` with the packed tasks' labels as one block under `PACKED`."""
        if not self.packed:
            return data
        n = len(data)
        targets, observed = [], []
        for task in self.packed:
            enc = data.labels.get(task.name)
            if enc is None:
                zeros = torch.zeros((n, task.width), device=data.inputs.device)
                enc = EncodedLabels(zeros, zeros.bool())
            targets.append(enc.target)
            observed.append(enc.observed)
        labels = {k: v for k, v in data.labels.items() if k not in {t.name for t in self.packed}}
        labels[PACKED] = EncodedLabels(torch.cat(targets, 1), torch.cat(observed, 1))
        return MultiTaskData(data.inputs, labels)

    def unpack(self, labels: Mapping[str, EncodedLabels]) -> dict[str, EncodedLabels]:
        """Per-task labels from packed ones (column views of the block)."""
        out = {k: v for k, v in labels.items() if k != PACKED}
        if PACKED in labels:
            block = labels[PACKED]
            for task, target, observed in zip(
                self.packed,
                torch.split(block.target, self.widths, dim=1),
                torch.split(block.observed, self.widths, dim=1),
                strict=True,
            ):
                out[task.name] = EncodedLabels(target, observed)
        return out

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: MultiTaskData
    ) -> tuple[torch.Tensor, torch.Tensor]:
        terms = [self._single(task, outputs[task.name], batch) for _, task in self.single]
        if not self.packed:  # every task on its own, in task order: no scatter needed
            sums = torch.stack([t.sum for t in terms])
            return sums, torch.stack([t.count for t in terms]).detach()
        logits = self._packed_logits(outputs)
        sums = logits.new_zeros(len(self.tasks))
        counts = logits.new_zeros(len(self.tasks))
        if PACKED in batch.labels:
            block = batch.labels[PACKED]
            loss = masked_binary_cross_entropy_with_logits(
                logits, block.target, block.observed, pos_weight=self.pos_weight, reduction="none"
            )
            sums = sums.index_add(0, self.column_task, loss.sum(0))
            counts = counts.index_add(0, self.column_task, block.observed.sum(0).to(counts.dtype))
        if terms:
            sums = sums.index_add(0, self.single_task, torch.stack([t.sum for t in terms]))
            counts = counts.index_add(0, self.single_task, torch.stack([t.count for t in terms]))
        return sums, counts.detach()

    def _single(self, task: Task, output: torch.Tensor, batch: MultiTaskData) -> LossTerm:
        enc = batch.labels.get(task.name)
        if enc is None:
            zero = output.sum() * 0.0
            return LossTerm(zero, zero.detach())
        loss_fn = self.loss_fns.get(task.name)
        if loss_fn is not None:
            term = loss_fn(task, output, enc.target, enc.observed)
        else:
            term = task_loss(
                task,
                output,
                enc.target,
                enc.observed,
                pos_weight=self.pos_weights[task.name],
                epochs_done=self.epochs_done,
            )
        return LossTerm(term.sum.to(output.dtype), term.count.to(output.dtype))
