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


def _keyed(scores: torch.Tensor, observed: torch.Tensor, *, descending: bool) -> torch.Tensor:
    """Scores ``(K, N)`` in float64, negated when ``descending``, missing entries +inf (last)."""
    keyed = (-scores if descending else scores).double().T
    return torch.where(observed.T, keyed, torch.full_like(keyed, torch.inf)).contiguous()


def _class_counts(target: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, ...]:
    positive = (target.bool() & observed).sum(0).double()
    return positive, observed.sum(0).double() - positive


def roc_auc(scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """ROC-AUC of each column ``(K,)``; NaN unless both classes are observed."""
    _check(scores, target, observed)
    keyed = _keyed(scores, observed, descending=False)
    ordered = torch.sort(keyed, dim=1).values  # the one sort of each column
    before = torch.searchsorted(ordered, keyed, right=False)  # observed entries ranked lower
    through = torch.searchsorted(ordered, keyed, right=True)  # ... or tied with it
    mean_rank = (before + through + 1).double() / 2  # 1-based, ties averaged
    is_positive = (target.bool() & observed).T
    positive, negative = _class_counts(target, observed)
    rank_sum = torch.where(is_positive, mean_rank, torch.zeros_like(mean_rank)).sum(1)
    auc = (rank_sum - positive * (positive + 1) / 2) / (positive * negative).clamp(min=1)
    return torch.where((positive > 0) & (negative > 0), auc, torch.full_like(auc, torch.nan))


def average_precision(
    scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """Average precision (PR-AUC) of each column ``(K,)``; NaN unless both classes are observed.

    Each observed positive contributes the precision at the lowest threshold that still ranks
    it positive (its tied scores included), divided by the number of positives.
    """
    _check(scores, target, observed)
    keyed = _keyed(scores, observed, descending=True)
    order = torch.argsort(keyed, dim=1, stable=True)
    ordered = torch.gather(keyed, 1, order)
    is_positive = (target.bool() & observed).T
    true_cum = torch.cumsum(torch.gather(is_positive, 1, order).double(), dim=1)
    through = torch.searchsorted(ordered, keyed, right=True)  # >= 1 for observed
    index = (through - 1).clamp(min=0)
    precision = torch.gather(true_cum, 1, index) / through.clamp(min=1).double()
    positive, negative = _class_counts(target, observed)
    total = torch.where(is_positive, precision, torch.zeros_like(precision)).sum(1)
    ap = total / positive.clamp(min=1)
    return torch.where((positive > 0) & (negative > 0), ap, torch.full_like(ap, torch.nan))


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
