"""Losses for single-positive (and other partially annotated) multilabel data, beside the
strategies of `taskmask.functional._partial`: AN-LS, EM, LL-R and ASL, each a pure function.

Every function takes ``input`` logits, ``target`` (0/1 where observed) and bool ``observed``, all
``(N, k)``; missing targets may hold anything (NaN, inf): they are filled before use and never
read. Notation: ``p = sigmoid(input)``; a *covered* row has at least one observed label; an
*unannotated* label is a missing label of a covered row (`covered_rows`). Rows with nothing
observed add nothing and get exactly zero gradient under every loss here, so an all-missing task
or batch gives a graph-connected exact 0 and appending one changes nothing.

Sums and counts, as in `_partial`: ``"sum"`` is the sum of the elementwise loss, ``"mean"``
divides it by the loss's *count* (``clamp(min=1)``), ``"none"`` is the elementwise loss, 0 where
an entry does not count. The count of each loss is the number of entries it weighs:

- AN-LS and EM: every label of a covered row (observed + unannotated);
- LL-R: the same, less the rejected labels;
- ASL: the observed labels, plus the unannotated ones with ``assume_negative=True``.

The papers divide by ``N * k`` (all entries of the batch), which is the same when every row is
covered; LL-R's authors keep rejected entries in that denominator (a learning-rate change).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from taskmask.errors import TaskmaskError
from taskmask.functional._losses import LossTerm, Reduction, _filled
from taskmask.functional._partial import _check, assumed_negative_weights

REDUCTIONS = ("mean", "sum", "none")

Terms = tuple[torch.Tensor, torch.Tensor]
"""``(loss, weights)``, both ``(N, k)``: the elementwise loss (0 where the weight is 0) and what
each entry counts."""


def _filled_checked(
    input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """``target`` filled (missing: 0) in ``input``'s dtype, the shapes checked."""
    _check(input, target, observed)
    return _filled(target, observed).to(input.dtype)


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise TaskmaskError(f"{name} must be in [{low}, {high}], got {value}")


def _reduce(terms: Terms, reduction: Reduction) -> torch.Tensor:
    """``terms`` reduced; ``"mean"`` divides by the summed weights."""
    loss, weights = terms
    if reduction not in REDUCTIONS:
        raise TaskmaskError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return loss
    total = loss.sum()
    return total if reduction == "sum" else total / weights.sum().clamp(min=1)


def _weighted_bce(
    input: torch.Tensor,
    smoothed: torch.Tensor,
    weights: torch.Tensor,
    pos_weight: torch.Tensor | None,
) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(
        input, smoothed, pos_weight=pos_weight, reduction="none"
    )
    return torch.where(weights > 0, weights * bce, 0.0)


def assume_negative_label_smoothing_bce_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    epsilon: float = 0.1,
    pos_weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """AN-LS: "assume negative" with label smoothing, Cole et al. 2021, "Multi-Label Learning
    from Single Positive Labels", CVPR (https://arxiv.org/abs/2106.09708), section 3.

    The unannotated labels of covered rows are negatives, then every target of a covered row is
    smoothed towards the other class, ``y_ls = (1 - epsilon) * y + epsilon * (1 - y)`` (a
    positive becomes ``1 - epsilon``, a negative ``epsilon``; the authors' code, ``ls_coef =
    0.1``), and the loss is ``BCE(p, y_ls)`` (``pos_weight`` on the positive term).
    ``epsilon`` in [0, 0.5]; 0 is "assume negative" exactly. Count: every label of a covered
    row."""
    terms = _label_smoothing(input, target, observed, epsilon=epsilon, pos_weight=pos_weight)
    return _reduce(terms, reduction)


def _label_smoothing(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    epsilon: float = 0.1,
    pos_weight: torch.Tensor | None = None,
) -> Terms:
    filled = _filled_checked(input, target, observed)
    _in_range("epsilon", epsilon, 0.0, 0.5)
    weights = assumed_negative_weights(observed, 1.0, dtype=input.dtype)
    smoothed = filled * (1.0 - epsilon) + (1.0 - filled) * epsilon
    return _weighted_bce(input, smoothed, weights, pos_weight), weights


def binary_entropy_with_logits(input: torch.Tensor) -> torch.Tensor:
    """``H(p) = -(p log p + (1 - p) log(1 - p))`` elementwise for ``p = sigmoid(input)``, in
    nats, from log-sigmoids (finite for any finite logit)."""
    p = torch.sigmoid(input)
    return -(p * F.logsigmoid(input) + (1.0 - p) * F.logsigmoid(-input))


def entropy_maximization_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    alpha: float = 0.1,
    pos_weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """EM: Zhou et al. 2022, "Acknowledging the Unknown for Multi-label Learning with Single
    Positive Labels", ECCV (https://arxiv.org/abs/2203.16219): the EM loss (without APL).

    Observed labels get their BCE (an observed positive ``-log p``, with ``pos_weight``);
    unannotated labels of covered rows get ``-alpha * H(p)`` (`binary_entropy_with_logits`):
    minimising it maximises their entropy, pulling them towards ``p = 1/2`` with a gradient
    that vanishes there, instead of calling them negatives. The loss can be negative.
    ``alpha`` >= 0: 0.1 as the authors use for COCO and NUS-WIDE (0.2 for VOC, 0.01 for CUB);
    0 is ``ignore``'s sum. Count: every label of a covered row."""
    return _reduce(_entropy(input, target, observed, alpha=alpha, pos_weight=pos_weight), reduction)


def _entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    alpha: float = 0.1,
    pos_weight: torch.Tensor | None = None,
) -> Terms:
    filled = _filled_checked(input, target, observed)
    if not alpha >= 0.0:
        raise TaskmaskError(f"alpha must be >= 0, got {alpha}")
    weights = assumed_negative_weights(observed, 1.0, dtype=input.dtype)
    unannotated = ~observed & (weights > 0)
    bce = F.binary_cross_entropy_with_logits(input, filled, pos_weight=pos_weight, reduction="none")
    entropy = binary_entropy_with_logits(input)
    return torch.where(observed, bce, torch.where(unannotated, -alpha * entropy, 0.0)), weights


def large_loss_rejection_rate(epochs_done: int, *, delta_rel: float) -> float:
    """LL-R's rejection rate after ``epochs_done`` full epochs: ``min(1, epochs_done *
    delta_rel)``, so the first epoch rejects nothing (the authors' code). The authors try
    ``delta_rel`` in {0.001, ..., 0.005} (0.1 % to 0.5 % per epoch)."""
    if epochs_done < 0:
        raise TaskmaskError(f"epochs_done must be >= 0, got {epochs_done}")
    _in_range("delta_rel", delta_rel, 0.0, 1.0)
    return min(1.0, epochs_done * delta_rel)


def rejected_labels(
    losses: torch.Tensor, assumed: torch.Tensor, rejection_rate: float
) -> torch.Tensor:
    """``(N, k)`` bool: the ``ceil(rejection_rate * n_assumed)`` entries of ``assumed`` with the
    largest ``losses`` (detached; ties go to the first in row-major order). No host sync."""
    flat = torch.where(assumed, losses.detach(), -math.inf).flatten()
    order = torch.sort(flat, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(len(order), device=flat.device))
    n_assumed = assumed.sum().to(torch.float64)
    n_rejected = torch.ceil(rejection_rate * n_assumed * (1 - 1e-9))  # 0.3 * 10 is 3, not 4
    return assumed & (rank.view(assumed.shape) < n_rejected)


def large_loss_rejection_bce_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    rejection_rate: float,
    pos_weight: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """LL-R: Kim et al. 2022, "Large Loss Matters in Weakly Supervised Multi-Label
    Classification", CVPR (https://arxiv.org/abs/2206.03740): LL-R, large loss rejection.

    "Assume negative" (BCE with the unannotated labels of covered rows as 0), except that the
    assumed negatives with the largest losses, ``ceil(rejection_rate * n_assumed)`` of them in
    the batch, are likely false negatives and get weight 0 (`rejected_labels`; chosen on
    detached losses, so the choice carries no gradient). The rate grows with training,
    ``(t - 1) * delta_rel`` at epoch ``t`` (`large_loss_rejection_rate`); it is an argument so
    that the function stays pure. ``rejection_rate`` in [0, 1]: 0 is "assume negative", 1 is
    ``ignore``, exactly. Count: observed labels + the assumed negatives kept. (The authors'
    code rejects ``ceil(rate * N * k)``, a fraction of every entry of the batch: with one
    positive per row that is ``k / (k - 1)`` times the rate here. Under torchrun each process
    ranks its own piece of the batch.)"""
    terms = _rejection(
        input, target, observed, rejection_rate=rejection_rate, pos_weight=pos_weight
    )
    return _reduce(terms, reduction)


def _rejection(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    rejection_rate: float,
    pos_weight: torch.Tensor | None = None,
) -> Terms:
    filled = _filled_checked(input, target, observed)
    _in_range("rejection_rate", rejection_rate, 0.0, 1.0)
    weights = assumed_negative_weights(observed, 1.0, dtype=input.dtype)
    bce = F.binary_cross_entropy_with_logits(input, filled, pos_weight=pos_weight, reduction="none")
    assumed = ~observed & (weights > 0)
    weights = weights.masked_fill(rejected_labels(bce, assumed, rejection_rate), 0.0)
    return torch.where(weights > 0, weights * bce, 0.0), weights


def _focused(base: torch.Tensor, gamma: float, log_term: torch.Tensor) -> torch.Tensor:
    """``base ** gamma * log_term`` where ``base > 0``, else 0 (``log_term`` is 0 there in
    exact arithmetic); ``base`` is never 0 inside ``pow``, so its gradient stays finite."""
    active = base > 0
    if gamma == 0.0:
        return torch.where(active, log_term, 0.0)
    return torch.where(active, torch.where(active, base, 1.0) ** gamma * log_term, 0.0)


def asymmetric_loss_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    assume_negative: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ASL: Ridnik et al. 2021, "Asymmetric Loss For Multi-Label Classification", ICCV
    (https://arxiv.org/abs/2009.14119), with its defaults gamma_pos 0, gamma_neg 4, clip 0.05.

    ``L = -y (1 - p)^gamma_pos log p - (1 - y) p_m^gamma_neg log(1 - p_m)`` with the shifted
    probability ``p_m = max(p - clip, 0)``: easy negatives are down-weighted and those with
    ``p <= clip`` discarded (zero loss and gradient). Applied to the observed labels, and with
    ``assume_negative=True`` also to the unannotated labels of covered rows as negatives (what
    single positive labels need: observed positives alone teach "all positive"). gamma = 0 and
    clip = 0 is BCE. Count: the labels it applies to."""
    options = {"gamma_pos": gamma_pos, "gamma_neg": gamma_neg, "clip": clip}
    return _reduce(
        _asymmetric(input, target, observed, **options, assume_negative=assume_negative), reduction
    )


def _asymmetric(
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    assume_negative: bool = False,
) -> Terms:
    filled = _filled_checked(input, target, observed)
    _in_range("gamma_pos", gamma_pos, 0.0, math.inf)
    _in_range("gamma_neg", gamma_neg, 0.0, math.inf)
    _in_range("clip", clip, 0.0, 1.0)
    weights = assumed_negative_weights(observed, float(assume_negative), dtype=input.dtype)
    one_minus_p = torch.sigmoid(-input)
    positive = _focused(one_minus_p, gamma_pos, F.logsigmoid(input))
    # log(1 - p_m) = log(min(1 - p + clip, 1)): the minimum only where _focused gives 0 anyway
    log_one_minus_shifted = F.logsigmoid(-input) if clip == 0.0 else torch.log(one_minus_p + clip)
    negative = _focused(torch.sigmoid(input) - clip, gamma_neg, log_one_minus_shifted)
    loss = -(filled * positive + (1.0 - filled) * negative)
    return torch.where(weights > 0, loss, 0.0), weights


_TERMS: dict[Callable[..., torch.Tensor], Callable[..., Terms]] = {
    assume_negative_label_smoothing_bce_with_logits: _label_smoothing,
    entropy_maximization_loss: _entropy,
    large_loss_rejection_bce_with_logits: _rejection,
    asymmetric_loss_with_logits: _asymmetric,
}


def single_positive_loss_term(
    loss: Callable[..., torch.Tensor],
    input: torch.Tensor,
    target: torch.Tensor,
    observed: torch.Tensor,
    **options: Any,
) -> LossTerm:
    """``LossTerm(sum, count)`` of one of the losses of this module (the function itself, e.g.
    `entropy_maximization_loss`) with its ``options`` but ``reduction``: what a task's loss
    returns (`taskmask.tasks.task_loss`, ``Trainer(loss_fns=...)``)."""
    terms = _TERMS.get(loss)
    if terms is None:
        names = ", ".join(fn.__name__ for fn in _TERMS)
        raise TaskmaskError(f"loss must be one of {names}, got {loss!r}")
    elementwise, weights = terms(input, target, observed, **options)
    return LossTerm(elementwise.sum(), weights.sum())
