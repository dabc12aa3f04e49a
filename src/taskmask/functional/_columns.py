"""Masked metrics of every column of a block at once: one sort per column, no Python per label.

Every function takes ``(N, K)`` tensors (``observed`` bool) and returns ``(K,)`` float64
tensors, NaN where the metric is undefined for that column; only observed entries count, and a
missing entry's value (NaN, inf, anything) changes nothing. They run on the device that holds
the inputs. The results equal scikit-learn's on each column's observed subset (tested to 1e-6):

- `roc_auc`: the Mann-Whitney statistic with tied scores ranked by their mean rank, which is
  ``sklearn.metrics.roc_auc_score``; undefined unless both classes are observed;
- `average_precision`: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct scores, which is
  ``sklearn.metrics.average_precision_score``; undefined unless both classes are observed;
- `threshold_counts`: true / false positives and negatives of ``score >= threshold``, from which
  accuracy, precision, recall and F1 follow (`binary_rates`);
- `regression_errors`: MSE, MAE and R² (undefined with fewer than 2 observed entries or a
  constant observed target).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from taskmask.errors import TaskmaskError


def _check(preds: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> None:
    if preds.ndim != 2 or not preds.shape == target.shape == observed.shape:
        raise TaskmaskError(
            "expected preds, target and observed of one shape (N, K), no broadcasting; got "
            f"{tuple(preds.shape)}, {tuple(target.shape)}, {tuple(observed.shape)}"
        )
    if observed.dtype != torch.bool:
        raise TaskmaskError(f"observed must be a bool tensor, got dtype {observed.dtype}")


class _Sorted(NamedTuple):
    """Each column sorted ascending once, missing entries last; shapes ``(K, N)``."""

    positive: torch.Tensor  # bool: an observed positive, in sorted order
    first: torch.Tensor  # position of the first entry of each entry's run of tied scores
    last: torch.Tensor  # position of the last one
    n_positive: torch.Tensor  # (K,)
    n_negative: torch.Tensor  # (K,)


def _sort(scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> _Sorted:
    _check(scores, target, observed)
    if not bool(torch.isfinite(scores[observed]).all()):
        raise TaskmaskError("observed scores must be finite (NaN or inf found)")
    keyed = torch.where(observed, scores.double(), torch.inf).T.contiguous()
    ordered, order = torch.sort(keyed, dim=1)  # the one sort of each column
    n = keyed.shape[1]
    position = torch.arange(n, device=keyed.device).expand_as(ordered)
    change = ordered[:, 1:] != ordered[:, :-1]
    edge = torch.ones_like(change[:, :1])
    starts = torch.cat([edge, change], dim=1)
    ends = torch.cat([change, edge], dim=1)
    first = torch.cummax(torch.where(starts, position, 0), dim=1).values
    last = torch.where(ends, position, n).flip(1).cummin(dim=1).values.flip(1)
    positive = torch.gather((target.bool() & observed).T, 1, order)
    n_positive = positive.sum(1).double()
    return _Sorted(positive, first, last, n_positive, observed.sum(0).double() - n_positive)


def _both_classes(sorted_: _Sorted, value: torch.Tensor) -> torch.Tensor:
    defined = (sorted_.n_positive > 0) & (sorted_.n_negative > 0)
    return torch.where(defined, value, torch.full_like(value, torch.nan))


def _roc_auc(s: _Sorted) -> torch.Tensor:
    mean_rank = (s.first + s.last + 2).double() / 2  # 1-based, tied scores averaged
    rank_sum = torch.where(s.positive, mean_rank, 0.0).sum(1)
    pairs = (s.n_positive * s.n_negative).clamp(min=1)
    return _both_classes(s, (rank_sum - s.n_positive * (s.n_positive + 1) / 2) / pairs)


def _average_precision(s: _Sorted) -> torch.Tensor:
    # Descending order is the ascending one reversed, with the missing entries (+inf) first.
    n = s.positive.shape[1]
    missing = n - (s.n_positive + s.n_negative)  # (K,)
    true_from_top = torch.cumsum(s.positive.flip(1).double(), dim=1)  # positives ranked >= here
    # an entry's threshold group ends, from the top, at its run's first ascending position
    end = (n - 1 - s.first).flip(1)  # (K, N) in descending order
    ranked = (end + 1).double() - missing[:, None]  # observed entries scored >= the entry
    precision = torch.gather(true_from_top, 1, end) / ranked.clamp(min=1)
    total = torch.where(s.positive.flip(1), precision, 0.0).sum(1)
    return _both_classes(s, total / s.n_positive.clamp(min=1))


def roc_auc(scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """ROC-AUC of each column ``(K,)``; NaN unless both classes are observed."""
    return _roc_auc(_sort(scores, target, observed))


def average_precision(
    scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """Average precision (PR-AUC) of each column ``(K,)``; NaN unless both classes are observed.

    Each observed positive contributes the precision at the lowest threshold that still ranks
    it positive (its tied scores included), divided by the number of positives.
    """
    return _average_precision(_sort(scores, target, observed))


def ranking_metrics(
    scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``roc_auc`` and ``pr_auc`` (average precision) ``(K,)`` from one sort of each column."""
    sorted_ = _sort(scores, target, observed)
    return {"roc_auc": _roc_auc(sorted_), "pr_auc": _average_precision(sorted_)}


def threshold_counts(
    scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor, thresholds: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``tp``, ``fp``, ``tn``, ``fn`` ``(K,)`` of ``score >= threshold`` (``thresholds`` ``(K,)``)
    over observed entries."""
    _check(scores, target, observed)
    predicted = scores >= thresholds.to(scores.device, scores.dtype).reshape(1, -1)
    actual = target.bool()

    def count(mask: torch.Tensor) -> torch.Tensor:
        return (mask & observed).sum(0).double()

    return {
        "tp": count(predicted & actual),
        "fp": count(predicted & ~actual),
        "tn": count(~predicted & ~actual),
        "fn": count(~predicted & actual),
    }


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    nan = torch.full_like(numerator, torch.nan)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), nan)


def binary_rates(counts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accuracy, precision, recall and F1 ``(K,)`` from `threshold_counts`; NaN where the
    denominator is 0 (nothing observed, nothing predicted positive, no observed positive, or
    neither observed nor predicted positive)."""
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def regression_errors(
    values: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``mse``, ``mae`` and ``r2`` ``(K,)`` over observed entries; MSE / MAE NaN with nothing
    observed, R² NaN with fewer than 2 observed entries or a constant observed target."""
    _check(values, target, observed)
    values, target = values.double(), target.double()
    zero = torch.zeros_like(values)
    n = observed.sum(0).double()
    error = torch.where(observed, values - target, zero)
    y = torch.where(observed, target, zero)
    mean = y.sum(0) / n.clamp(min=1)
    spread = torch.where(observed, target - mean, zero)
    total = (spread * spread).sum(0)
    highest = torch.where(observed, target, torch.full_like(y, -torch.inf)).amax(0)
    constant = highest == torch.where(observed, target, torch.full_like(y, torch.inf)).amin(0)
    residual = (error * error).sum(0)
    r2 = 1 - residual / total.clamp(min=1e-300)
    nan = torch.full_like(n, torch.nan)
    return {
        "mse": _ratio(residual, n),
        "mae": _ratio(error.abs().sum(0), n),
        "r2": torch.where((n >= 2) & ~constant & (total > 0), r2, nan),
    }
