"""The loss of one task: its kind's masked loss as ``LossTerm(sum, count)``, and the
partial-label losses of a multilabel task (``missing_labels``)."""

from __future__ import annotations

import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._losses import LossTerm, _check_shapes
from taskmask.functional._partial import (
    _weak_negative,
    expected_positive_binary_cross_entropy_with_logits,
)
from taskmask.tasks._task import Task


def partial_label_loss(
    task: Task,
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    pos_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum, count)`` of a multilabel task whose ``missing_labels`` is not ``"ignore"``, with
    the task's options resolved: gamma defaults to ``1 / (k - 1)``, lambda to ``k``."""
    k = input.shape[-1]
    if task.missing_labels == "expected_positive":
        expected = task.expected_positives
        if expected is None or expected > k:
            raise TaskmaskError(
                f"task {task.name!r}: missing_labels='expected_positive' needs "
                f"expected_positives in (0, {k}] for its {k} labels, got {expected}"
            )
        weight = task.expected_positive_weight
        total = expected_positive_binary_cross_entropy_with_logits(
            input,
            target,
            observed,
            expected_positives=expected,
            weight=float(k) if weight is None else weight,
            pos_weight=pos_weight,
            reduction="sum",
        )
        return total, observed.sum().to(total.dtype)
    if task.missing_labels == "negative":
        gamma = 1.0
    elif task.negative_weight is not None:
        gamma = task.negative_weight
    else:
        gamma = 1.0 / max(k - 1, 1)
    loss, weights = _weak_negative(input, target, observed, gamma, pos_weight)
    return loss.sum(), weights.sum()


def task_loss(
    task: Task,
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    pos_weight: torch.Tensor | None = None,
) -> LossTerm:
    """The task's loss as ``LossTerm(sum over observed, observed count)``: its kind's
    ``task_loss`` (with the task's options, ``pos_weight`` included), else its ``loss``; the
    result is checked to be a pair of tensors."""
    _check_shapes(input, target, observed)
    spec = task.spec
    if spec.task_loss is not None:
        term = spec.task_loss(task, input, target, observed, pos_weight)
    else:
        term = spec.loss(input, target, observed)
    if not (isinstance(term, tuple) and len(term) == 2):
        raise TaskmaskError(
            f"task {task.name!r}: the loss of kind {task.kind!r} must return "
            f"LossTerm(sum, count), got {type(term).__name__}"
        )
    total, count = term
    if not (isinstance(total, torch.Tensor) and isinstance(count, torch.Tensor)):
        raise TaskmaskError(
            f"task {task.name!r}: the loss of kind {task.kind!r} must return tensors, got "
            f"({type(total).__name__}, {type(count).__name__})"
        )
    return LossTerm(total, count)
