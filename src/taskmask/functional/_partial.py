"""Multilabel losses that do not simply ignore missing labels (``Task.missing_labels``).

Cole et al. 2021, "Multi-Label Learning from Single Positive Labels", CVPR
(https://arxiv.org/abs/2106.09708), section 3. See ``docs/partial_labels.md``.

Scope: an assumption about missing labels applies to the *covered* rows of a task only, the
rows with at least one observed label of it. A row with none of the task's labels observed is a
row the task does not cover (another data source, another task's rows): it adds nothing and
gets exactly zero gradient under every strategy, as under ``ignore``. So an all-missing task or
batch still gives a graph-connected exact 0, and appending one changes nothing.

Every function here takes ``input`` logits, ``target`` and bool ``observed``, all ``(N, k)``.
Missing targets may hold anything (NaN, inf): they are filled before use and never read.

- `weak_negative_binary_cross_entropy_with_logits`: missing labels of covered rows are
  negatives of weight ``negative_weight`` (gamma); observed labels weigh 1. ``"sum"`` is
  ``sum(weight * bce)``; the count (denominator of ``"mean"``) is ``sum(weight)``, so gamma = 1
  is "assume negative" (every entry of a covered row counts 1) and gamma = 0 is ``ignore``.
- `expected_positive_binary_cross_entropy_with_logits`: BCE on observed labels only (an observed
  positive gives the positive term ``-log sigmoid(x)`` alone, as in the paper) plus
  ``weight * R`` with ``R = ((k_hat - expected_positives) / k) ** 2``, ``k_hat`` the mean over
  covered rows of the summed predicted probabilities. R is not a sum over entries, so its sum
  form is ``weight * R * n_observed``: ``sum / n_observed`` is then exactly ``mean BCE +
  weight * R`` on a batch, and summing sums and counts over batches (epoch losses) or processes
  (torchrun) gives the count-weighted mean of each piece's R (R of each piece, not of the union).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from taskmask.functional._losses import Reduction, _filled, masked_binary_cross_entropy_with_logits


def _check(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> None:
    if observed.dtype != torch.bool:
        raise ValueError(f"observed must be a bool tensor, got {observed.dtype}")
    if input.ndim != 2 or not input.shape == target.shape == observed.shape:
        raise ValueError(
            "input, target and observed must all be (N, k) (no broadcasting), got "
            f"{tuple(input.shape)}, {tuple(target.shape)}, {tuple(observed.shape)}"
        )


def covered_rows(observed: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the rows of ``(N, k)`` ``observed`` with at least one observed label."""
    return observed.any(dim=1)


def assumed_negative_weights(
    observed: torch.Tensor, negative_weight: float, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(N, k)`` weights: 1 where observed, ``negative_weight`` where missing in a covered
    row, 0 in rows with nothing observed."""
    missing = ~observed & covered_rows(observed)[:, None]
    weights = torch.zeros(observed.shape, dtype=dtype, device=observed.device)
    return weights.masked_fill(missing, negative_weight).masked_fill(observed, 1.0)


def weak_negative_binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    negative_weight: float = 1.0,
    pos_weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """BCE from logits with the missing labels of covered rows taken as negatives of weight
    ``negative_weight`` in [0, 1]. ``"mean"`` divides by the summed weights (``clamp(min=1)``);
    ``"none"`` is the weighted elementwise loss, 0 where the weight is 0."""
    loss, weights = _weak_negative(input, target, observed, negative_weight, pos_weight)
    if reduction == "none":
        return loss
    total = loss.sum()
    return total if reduction == "sum" else total / weights.sum().clamp(min=1)


def _weak_negative(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    negative_weight: float,
    pos_weight: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted elementwise loss of `weak_negative_binary_cross_entropy_with_logits` and
    its weights (`assumed_negative_weights`)."""
    _check(input, target, observed)
    if not 0.0 <= negative_weight <= 1.0:
        raise ValueError(f"negative_weight must be in [0, 1], got {negative_weight}")
    weights = assumed_negative_weights(observed, negative_weight, dtype=input.dtype)
    filled = _filled(target, observed).to(input.dtype)  # missing: assumed negative
    bce = F.binary_cross_entropy_with_logits(input, filled, pos_weight=pos_weight, reduction="none")
    return torch.where(weights > 0, weights * bce, 0.0), weights


def expected_positive_regularizer(
    input: torch.Tensor, observed: torch.Tensor, *, expected_positives: float
) -> torch.Tensor:
    """``((k_hat - expected_positives) / k) ** 2``, where ``k_hat`` is the mean over covered rows
    of ``sigmoid(input).sum(1)``; a graph-connected exact 0 when no row is covered."""
    covered = covered_rows(observed)
    per_row = torch.sigmoid(input).sum(dim=1)
    n_covered = covered.sum()
    k_hat = torch.where(covered, per_row, 0.0).sum() / n_covered.clamp(min=1)
    penalty = ((k_hat - expected_positives) / input.shape[1]) ** 2
    return torch.where(n_covered > 0, penalty, 0.0)


def expected_positive_binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    expected_positives: float,
    weight: float = 1.0,
    pos_weight: torch.Tensor | None = None,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """BCE over observed labels plus ``weight`` times `expected_positive_regularizer`.

    ``"mean"``: ``mean BCE over observed + weight * R``; ``"sum"``: ``sum BCE + weight * R *
    n_observed`` (the additive form; see the module docstring). There is no ``"none"``.
    """
    _check(input, target, observed)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum' (R is per batch), got {reduction!r}")
    if not 0.0 < expected_positives <= input.shape[1]:
        raise ValueError(
            f"expected_positives must be in (0, {input.shape[1]}] for {input.shape[1]} labels, "
            f"got {expected_positives}"
        )
    total = masked_binary_cross_entropy_with_logits(
        input, target.to(input.dtype), observed, pos_weight=pos_weight, reduction="sum"
    )
    n_observed = observed.sum()
    penalty = weight * expected_positive_regularizer(
        input, observed, expected_positives=expected_positives
    )
    if reduction == "sum":
        return total + penalty * n_observed
    return total / n_observed.clamp(min=1) + penalty
