"""Masked losses: pure functions ``(input, target, observed, *, ...)``.

Contract for every loss here:

- an entry with ``observed == False`` adds nothing and gets exactly zero gradient, whatever its
  target holds (NaN and inf included): targets are filled before the loss is computed, and the
  elementwise loss is selected with ``torch.where``, never multiplied;
- ``reduction="sum"`` returns the sum over observed entries, ``"mean"`` divides by the number of
  observed entries (``count.clamp(min=1)``), so a task with nothing observed gives a
  graph-connected exact 0, never NaN; ``"none"`` returns the elementwise loss, 0 where missing.

`task_loss` applies the right loss to one task and returns ``LossTerm(sum, count)``: the
per-task sum and observed count, which a distributed run can add across processes before the
division. A user-defined kind (`taskmask.tasks`) brings its own loss under the same contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum", "none"]


class LossTerm(NamedTuple):
    """Sum of one task's elementwise loss over its observed entries, and how many there were."""

    sum: torch.Tensor
    count: torch.Tensor  # type: ignore[assignment]  # the field hides tuple.count, on purpose

    @classmethod
    def over(cls, total: torch.Tensor, observed: torch.Tensor) -> LossTerm:
        """``total`` with the number of observed entries as its count (in ``total``'s dtype)."""
        return cls(total, observed.sum().to(total.dtype))

    def mean(self) -> torch.Tensor:
        """Mean over observed entries; exactly 0 (graph-connected) when none is observed."""
        return self.sum / self.count.clamp(min=1)


def _check_shapes(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> None:
    if target.shape != observed.shape:
        raise ValueError(
            f"target {tuple(target.shape)} and observed {tuple(observed.shape)} differ"
        )
    if observed.dtype != torch.bool:
        raise ValueError(f"observed must be a bool tensor, got {observed.dtype}")


def _check_same(input: torch.Tensor, target: torch.Tensor) -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"input {tuple(input.shape)} and target {tuple(target.shape)} must have the same "
            "shape (no broadcasting)"
        )


def _reduce(loss: torch.Tensor, observed: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    loss = torch.where(observed, loss, 0.0)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / observed.sum().clamp(min=1)


def _filled(target: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    return torch.where(observed, target, 0)


def _elementwise(
    loss_fn: Callable[..., torch.Tensor],
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    reduction: Reduction,
    **options: Any,
) -> torch.Tensor:
    """``loss_fn(input, filled target, reduction="none", **options)`` over observed entries of
    same-shaped ``input`` and ``target``."""
    _check_shapes(input, target, observed)
    _check_same(input, target)
    loss = loss_fn(input, _filled(target, observed), reduction="none", **options)
    return _reduce(loss, observed, reduction)


def masked_binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    pos_weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """BCE from logits over observed entries. Shapes ``(N, k)``; ``pos_weight`` ``(k,)``."""
    return _elementwise(
        F.binary_cross_entropy_with_logits,
        input,
        target,
        observed,
        reduction,
        pos_weight=pos_weight,
    )


def masked_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Softmax cross entropy over observed rows. ``input (N, C)`` logits, ``target (N,)`` int."""
    _check_shapes(input, target, observed)
    if input.ndim != 2 or target.shape != input.shape[:1]:
        raise ValueError(
            "expected input (N, C) and target (N,), "
            f"got {tuple(input.shape)}, {tuple(target.shape)}"
        )
    loss = F.cross_entropy(input, _filled(target, observed), reduction="none")
    return _reduce(loss, observed, reduction)


def masked_mse_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Squared error over observed entries. Shapes ``(N, k)``."""
    return _elementwise(F.mse_loss, input, target, observed, reduction)


def masked_l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Absolute error over observed entries. Shapes ``(N, k)``."""
    return _elementwise(F.l1_loss, input, target, observed, reduction)


def masked_huber_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    delta: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Huber loss over observed entries. Shapes ``(N, k)``."""
    return _elementwise(F.huber_loss, input, target, observed, reduction, delta=delta)


def masked_poisson_nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Poisson negative log-likelihood ``exp(input) - target * input`` over observed entries,
    ``input`` the log-rate (`F.poisson_nll_loss` with ``log_input=True, full=False``).
    Shapes ``(N, k)``."""
    return _elementwise(
        F.poisson_nll_loss, input, target, observed, reduction, log_input=True, full=False
    )


def balanced_pos_weight(target: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``negatives / positives`` per label over observed entries of ``(N, k)`` 0/1 targets.

    A label with no observed positive (or negative) gets weight 1.
    """
    positives = (target.bool() & observed).sum(0).to(torch.float32)
    negatives = (~target.bool() & observed).sum(0).to(torch.float32)
    ratio = negatives / positives.clamp(min=1)
    return torch.where((positives > 0) & (negatives > 0), ratio, torch.ones_like(ratio))
