"""``multilabel``: k logits, one per named label, targets 0/1 per label; the partial-label
strategies of ``missing_labels`` (``docs/partial_labels.md``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._losses import LossTerm
from taskmask.functional._metrics import MetricValue, multilabel_metrics
from taskmask.tasks._loss import partial_label_loss
from taskmask.tasks._masking import CLASS_SENTINEL, encode_flags
from taskmask.tasks._task import Decisions, Task, TaskKindSpec
from taskmask.tasks.kinds.binary import (
    bce_loss,
    flag_metrics,
    indexed_flag_metrics,
    sigmoid,
    weighted_bce_loss,
)


def _loss(
    task: Task,
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    pos_weight: torch.Tensor | None,
) -> LossTerm:
    if task.missing_labels != "ignore":  # the trainer's path, task_loss, passes epochs_done
        return LossTerm(*partial_label_loss(task, input, target, observed, pos_weight=pos_weight))
    return weighted_bce_loss(task, input, target, observed, pos_weight)


def _metrics(
    task: Task, probs: np.ndarray, target: np.ndarray, observed: np.ndarray
) -> dict[str, MetricValue]:
    """Per label `binary_metrics` at the task's thresholds, plus the set-level
    `multilabel_metrics` (``exact_match`` over complete rows, ``hamming_loss``, micro scores)."""
    values = flag_metrics(task, probs, target, observed)
    values.update(
        multilabel_metrics(probs, target.astype(np.float64), observed, thresholds=task.thresholds())
    )
    return values


def indexed_labels(task: Task) -> tuple[str, ...]:
    """``labels``, else ``name_0..`` for ``n_outputs``; an error before either is known."""
    if task.labels is not None:
        return task.labels
    if task.n_outputs is None:
        raise TaskmaskError(f"task {task.name!r}: labels are not known yet (fit first)")
    return tuple(f"{task.name}_{i}" for i in range(task.n_outputs))


def _decisions(task: Task, probs: np.ndarray) -> Decisions:
    decisions = probs >= np.asarray(task.thresholds())
    names_of = task.output_names
    return decisions, [[names_of[j] for j in np.flatnonzero(row)] for row in decisions]


def _columns(
    task: Task, probs: np.ndarray, decisions: np.ndarray | None, names: list[Any] | None
) -> dict[str, Any]:
    assert decisions is not None and names is not None
    outputs = task.output_names
    columns: dict[str, Any] = {f"prob.{out}": probs[:, j] for j, out in enumerate(outputs)}
    columns.update(
        {f"pred.{out}": decisions[:, j].astype(np.int8) for j, out in enumerate(outputs)}
    )
    columns["labels"] = [";".join(row) for row in names]
    return columns


MULTILABEL = TaskKindSpec(
    loss=bce_loss,
    metrics=indexed_flag_metrics,
    summary="roc_auc",
    width=lambda task: len(indexed_labels(task)),
    output_names=indexed_labels,
    encode=encode_flags,
    decisions=_decisions,
    targets="flags",
    per_column=True,
    sentinel=CLASS_SENTINEL,
    options=frozenset({"pos_weight", "missing_labels"}),
    task_loss=_loss,
    task_metrics=_metrics,
    scores=sigmoid,
    columns=_columns,
    packs=True,
    tunes_thresholds=True,
)
