"""Seed 004's siamese losses as user-defined task kinds, through taskmask's public API only.

- ``contrastive``: the head is the Euclidean distance between the two embeddings of a
  `taskmask.PairConfig` trunk (no weights); the target is 1 (same digit) or 0 (different);
  the loss is Hadsell et al.'s ``y d² + (1 - y) max(margin - d, 0)²`` with margin 1, as in
  Keras's ``mnist_siamese`` example; a pair is predicted "same" when ``d < 0.5``.
- ``softmax_contrastive``: what seed 004's notebook really trained its digit heads with. It
  compiled the whole model with ``loss=contrastive_loss``, so each 10-way softmax output met
  the contrastive loss against the one-hot digit: ``mean_c(onehot_c p_c² + (1 - onehot_c)
  max(1 - p_c, 0)²)``. That loss is lowest when the true digit gets probability 0, so such a
  head names its digit by the *smallest* probability (``argmin_accuracy``).

Both follow the masking contract of `taskmask.tasks`: a missing label adds nothing and gets
exactly zero gradient (``torch.where`` selects, never multiplies).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn.metrics as skm
import torch
from torch import nn

import taskmask
from taskmask import LossTerm, Task, TaskKindSpec, TaskmaskError
from taskmask.functional import EncodedLabels, MetricValue, Undefined
from taskmask.model import split_pair
from taskmask.tasks import encode_numbers

MARGIN = 1.0
SAME_BELOW = 0.5  # Keras's compute_accuracy: a distance under 0.5 means "same"
N_DIGITS = 10


class PairDistance(nn.Module):
    """``(N, 2 d)`` pair features -> ``(N, 1)`` Euclidean distance, ``sqrt(max(ss, 1e-7))``
    as Keras's ``euclidean_distance`` (a finite gradient when both embeddings coincide)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        first, second = split_pair(features)
        squared = (first - second).pow(2).sum(dim=1, keepdim=True)
        return squared.clamp(min=1e-7).sqrt()


def contrastive_loss(input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> LossTerm:
    """Sum over observed pairs of ``y d² + (1 - y) max(margin - d, 0)²``; ``(N, 1)`` each."""
    same = torch.where(observed, target, 0.0)
    loss = same * input.pow(2) + (1 - same) * torch.relu(MARGIN - input).pow(2)
    loss = torch.where(observed, loss, 0.0)
    return LossTerm(loss.sum(), observed.sum().to(loss.dtype))


def pair_metrics(preds: Any, target: Any, observed: Any) -> dict[str, MetricValue]:
    """Accuracy of ``d < 0.5`` as "same", ROC-AUC of ``-d``, on observed pairs only."""
    seen = observed[:, 0]
    if not seen.any():
        none = Undefined("no observed label")
        return {"pair_accuracy": none, "pair_roc_auc": none, "n_observed": 0.0}
    distance, same = preds[seen, 0], target[seen, 0] == 1
    both = bool(same.any()) and not bool(same.all())
    auc = float(skm.roc_auc_score(same, -distance)) if both else Undefined("one class only")
    accuracy = float(np.mean((distance < SAME_BELOW) == same))
    return {"pair_accuracy": accuracy, "pair_roc_auc": auc, "n_observed": float(seen.sum())}


def read_same_flags(task: Task, raw: Any, where: str) -> EncodedLabels:
    """Raw same/different flags (1 / 0; NaN, None or blank missing) as ``(N, 1)`` targets."""
    encoded = encode_numbers(raw, width=1, sentinel=task.sentinel, source=where)
    bad = encoded.observed & (encoded.target != 0) & (encoded.target != 1)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0, 0])
        raise TaskmaskError(f"{where}: row {row} is not 1 (same), 0 (different) or missing")
    return encoded


def read_digits(task: Task, raw: Any, where: str) -> EncodedLabels:
    """Raw digits 0..9 (NaN, None or blank missing) as ``(N, 1)`` float targets."""
    encoded = encode_numbers(raw, width=1, sentinel=task.sentinel, source=where)
    values = encoded.target[encoded.observed]
    if bool(((values < 0) | (values >= N_DIGITS) | (values != values.round())).any()):
        raise TaskmaskError(f"{where}: digits are integers 0..{N_DIGITS - 1} or missing")
    return encoded


def softmax_contrastive_loss(
    input: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> LossTerm:
    """Seed 004's digit loss: per observed row, the mean over the 10 classes of the
    contrastive loss between the softmax probability and the one-hot digit."""
    digit = torch.where(observed, target, 0.0).long()[:, 0]
    onehot = nn.functional.one_hot(digit, N_DIGITS).to(input.dtype)  # (N, 10)
    probs = torch.softmax(input, dim=1)
    per_class = onehot * probs.pow(2) + (1 - onehot) * torch.relu(1 - probs).pow(2)
    loss = torch.where(observed[:, 0], per_class.mean(dim=1), 0.0)
    return LossTerm(loss.sum(), observed.sum().to(loss.dtype))


def digit_metrics(preds: Any, target: Any, observed: Any) -> dict[str, MetricValue]:
    """Accuracy of the largest and of the smallest logit as the digit, on observed rows."""
    seen = observed[:, 0]
    if not seen.any():
        none = Undefined("no observed label")
        return {"argmin_accuracy": none, "argmax_accuracy": none, "n_observed": 0.0}
    logits, digit = preds[seen], target[seen, 0].astype(np.int64)
    return {
        "argmin_accuracy": float(np.mean(logits.argmin(axis=1) == digit)),
        "argmax_accuracy": float(np.mean(logits.argmax(axis=1) == digit)),
        "n_observed": float(seen.sum()),
    }


CONTRASTIVE = TaskKindSpec(
    loss=contrastive_loss,
    metrics=pair_metrics,
    summary="pair_accuracy",
    width=lambda task: 1,
    encode=read_same_flags,
    head=lambda task, in_features: PairDistance(),
    decide=lambda distance: distance < SAME_BELOW,
)
SOFTMAX_CONTRASTIVE = TaskKindSpec(
    loss=softmax_contrastive_loss,
    metrics=digit_metrics,
    summary="argmin_accuracy",
    width=lambda task: N_DIGITS,
    encode=read_digits,
)


def register() -> None:
    """Register both kinds in this process (again if they already are)."""
    taskmask.register_kind("contrastive", CONTRASTIVE, replace=True)
    taskmask.register_kind("softmax_contrastive", SOFTMAX_CONTRASTIVE, replace=True)
