"""The loss of one task: its kind's masked loss as ``LossTerm(sum, count)``, and the
partial-label losses of a multilabel task (``missing_labels``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._losses import LossTerm, _check_shapes
from taskmask.functional._partial import (
    _weak_negative,
    expected_positive_binary_cross_entropy_with_logits,
)
from taskmask.functional._single_positive import (
    assume_negative_label_smoothing_bce_with_logits,
    asymmetric_loss_with_logits,
    entropy_maximization_loss,
    large_loss_rejection_bce_with_logits,
    large_loss_rejection_rate,
    single_positive_loss_term,
)
from taskmask.tasks._missing_labels import PARTIAL_LABEL_OPTIONS
from taskmask.tasks._task import Task

DEFAULT_DELTA_REL = 0.002
"""LL-R's rejection rate growth per epoch done when ``delta_rel`` is not given (the middle of
the authors' grid, 0.001 to 0.005)."""

_SINGLE_POSITIVE: dict[str, Callable[..., torch.Tensor]] = {
    "smoothed_negative": assume_negative_label_smoothing_bce_with_logits,
    "entropy_max": entropy_maximization_loss,
    "large_loss_rejection": large_loss_rejection_bce_with_logits,
}


def _single_positive(
    task: Task,
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    pos_weight: torch.Tensor | None,
    epochs_done: int,
) -> LossTerm:
    """The `taskmask.functional` single-positive loss of ``task.missing_labels`` with the
    task's ``missing_label_options`` (the functions' defaults for the rest)."""
    options: dict[str, float] = dict(task.missing_label_options or {})
    strategy = task.missing_labels
    if strategy == "asymmetric":
        return single_positive_loss_term(
            asymmetric_loss_with_logits, input, target, observed, **options, assume_negative=True
        )
    if strategy == "large_loss_rejection":
        delta_rel = options.pop("delta_rel", DEFAULT_DELTA_REL)
        options["rejection_rate"] = large_loss_rejection_rate(epochs_done, delta_rel=delta_rel)
    return single_positive_loss_term(
        _SINGLE_POSITIVE[strategy], input, target, observed, **options, pos_weight=pos_weight
    )


def partial_label_loss(
    task: Task,
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    pos_weight: torch.Tensor | None = None,
    epochs_done: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum, count)`` of a multilabel task whose ``missing_labels`` is not ``"ignore"``, with
    the task's options resolved: gamma defaults to ``1 / (k - 1)``, lambda to ``k``, the
    single-positive losses' options to the functions' defaults. ``epochs_done`` (full training
    epochs before this batch) sets LL-R's rejection rate; the other strategies ignore it."""
    k = input.shape[-1]
    if task.missing_labels in PARTIAL_LABEL_OPTIONS:
        term = _single_positive(task, input, target, observed, pos_weight, epochs_done)
        return term.sum, term.count
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
    epochs_done: int = 0,
) -> LossTerm:
    """The task's loss as ``LossTerm(sum over observed, observed count)``: its kind's
    ``task_loss`` (with the task's options, ``pos_weight`` included), else its ``loss``; the
    result is checked to be a pair of tensors. ``epochs_done``: the full training epochs before
    this batch (the trainer's `BatchLoss.epochs_done`), read by ``large_loss_rejection`` only:
    a ``missing_labels`` strategy other than ``ignore`` is applied here, for any kind that
    reads ``missing_labels``, so that the loss stays a pure function of its arguments."""
    _check_shapes(input, target, observed)
    spec = task.spec
    if task.missing_labels != "ignore":
        term = LossTerm(
            *partial_label_loss(
                task, input, target, observed, pos_weight=pos_weight, epochs_done=epochs_done
            )
        )
    elif spec.task_loss is not None:
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
