"""Masked metrics: pure functions ``(preds, target, observed, *, ...)``; sklearn does the maths.

Contract for every metric here:

- only entries with ``observed == True`` count; whatever a missing entry holds (NaN, inf, any
  garbage) changes nothing, because each label is subset to its observed rows before use;
- a metric that cannot be computed (nothing observed, one class only for ROC-AUC / PR-AUC,
  nothing predicted positive for precision, ...) is ``Undefined(reason)``, never 0 or NaN;
- ``f"{metric}_macro"`` is the mean over the labels where ``metric`` is defined, and
  ``f"{metric}_macro_n_labels"`` says how many labels that was; the macro is
  ``Undefined("undefined for every label")`` when there are none;
- shapes are checked, never broadcast: a mismatch raises `TaskmaskError` naming the shapes.

Keys: per label ``f"{metric}/{label}"``, macros ``f"{metric}_macro"``, counts
``f"n_observed/{label}"``; a task with a single output also gets the plain ``metric`` keys.
A binary prediction is positive when ``prob >= threshold``. A user-defined kind
(`taskmask.tasks`) brings its own metrics under the same contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn.metrics as skm
import torch

from taskmask.errors import TaskmaskError
from taskmask.functional import _columns as columns

Array = npt.NDArray[Any]

BINARY_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
MULTILABEL_METRICS = ("exact_match", "hamming_loss", "precision_micro", "recall_micro", "f1_micro")
REGRESSION_METRICS = ("mse", "mae", "r2")
COUNT_METRICS = ("poisson_deviance", "mae")
_LOWER_IS_BETTER = ("loss", "mse", "mae", "hamming")


@dataclass(frozen=True)
class Undefined:
    """A metric that has no value on these labels; ``reason`` says why."""

    reason: str


MetricValue = float | Undefined


def _check_observed(observed: Array) -> None:
    if observed.dtype != np.bool_:
        raise TaskmaskError(f"observed must be a bool array, got dtype {observed.dtype}")


def _check_same_shape(preds: Array, target: Array, observed: Array) -> None:
    if preds.ndim != 2 or not preds.shape == target.shape == observed.shape:
        raise TaskmaskError(
            "preds, target and observed must all have one shape (N, k), no broadcasting; got "
            f"preds {preds.shape}, target {target.shape}, observed {observed.shape}"
        )
    _check_observed(observed)


def _check_names(names: Sequence[Any], width: int, what: str) -> None:
    if len(names) != width:
        raise TaskmaskError(f"{len(names)} {what} for {width} outputs: {list(names)}")


def _defined(value: Any, reason: str) -> MetricValue:
    """A scikit-learn result as a float, or `Undefined` where it is NaN."""
    value = float(value)
    return Undefined(reason) if np.isnan(value) else value


def _macro(metric: str, values: Sequence[MetricValue]) -> dict[str, MetricValue]:
    defined = [v for v in values if not isinstance(v, Undefined)]
    mean = float(np.mean(defined)) if defined else Undefined("undefined for every label")
    return {f"{metric}_macro": mean, f"{metric}_macro_n_labels": float(len(defined))}


def _per_label(
    rows: Sequence[dict[str, MetricValue]], names: Sequence[str], metrics: Sequence[str]
) -> dict[str, MetricValue]:
    """Per-label keys, macros, counts, and the plain keys of a single-output task."""
    out: dict[str, MetricValue] = {}
    for metric in (*metrics, "n_observed"):
        values = [row[metric] for row in rows]
        out.update({f"{metric}/{name}": v for name, v in zip(names, values, strict=True)})
        if metric != "n_observed":
            out.update(_macro(metric, values))
    if len(rows) == 1:
        out.update(rows[0])
    return out


def _column_rows(
    values: dict[str, torch.Tensor], n_observed: torch.Tensor, reasons: dict[str, str]
) -> list[dict[str, MetricValue]]:
    """Per-column metric dicts from ``(K,)`` tensors: NaN becomes `Undefined` with the metric's
    reason, or "no observed label" for a column with nothing observed."""
    table = {name: value.tolist() for name, value in values.items()}
    counts = n_observed.tolist()
    rows: list[dict[str, MetricValue]] = []
    for j, count in enumerate(counts):
        row: dict[str, MetricValue] = {}
        for name, column in table.items():
            value = column[j]
            if value != value:  # NaN
                reason = reasons[name] if count else "no observed label"
                row[name] = Undefined(reason)
            else:
                row[name] = float(value)
        row["n_observed"] = float(count)
        rows.append(row)
    return rows


_BINARY_REASONS = {
    "accuracy": "no observed label",
    "precision": "nothing predicted positive",
    "recall": "no observed positive",
    "f1": "no observed or predicted positive",
    "roc_auc": "only one class observed",
    "pr_auc": "only one class observed",
}


def _tensors(*arrays: Array) -> list[torch.Tensor]:
    return [torch.as_tensor(np.ascontiguousarray(a)) for a in arrays]


def binary_metrics(
    probs: Array,
    target: Array,
    observed: Array,
    *,
    labels: Sequence[str],
    thresholds: Sequence[float],
) -> dict[str, MetricValue]:
    """Accuracy, precision, recall, F1, ROC-AUC and PR-AUC (average precision) per label.

    ``probs``, ``target`` (0/1) and ``observed`` (bool) are ``(N, k)``; ``labels`` and
    ``thresholds`` have one entry per column. Keys are described in the module docstring.
    """
    probs, target, observed = np.asarray(probs), np.asarray(target), np.asarray(observed)
    _check_same_shape(probs, target, observed)
    _check_names(labels, probs.shape[1], "labels")
    _check_names(thresholds, probs.shape[1], "thresholds")
    scores, y, seen = _tensors(probs.astype(np.float64), target.astype(np.float64), observed)
    cuts = torch.tensor([float(t) for t in thresholds], dtype=torch.float64)
    values = columns.binary_rates(columns.threshold_counts(scores, y, seen, cuts))
    values |= columns.ranking_metrics(scores, y, seen)
    rows = _column_rows(values, seen.sum(0), _BINARY_REASONS)
    return _per_label(rows, labels, BINARY_METRICS)


def multilabel_metrics(
    probs: Array, target: Array, observed: Array, *, thresholds: Sequence[float]
) -> dict[str, MetricValue]:
    """Set-level metrics of a multilabel decision (``prob >= threshold`` per label) on observed
    entries only; ``probs``, ``target`` (0/1) and ``observed`` (bool) are ``(N, k)``.

    - ``exact_match``: scikit-learn's subset accuracy over the *complete* rows (every label
      observed): a row with a missing label cannot be judged as a whole, so it is left out;
      ``n_complete`` counts the rows used;
    - ``hamming_loss``: the fraction of observed (row, label) entries decided wrongly;
    - ``precision_micro``, ``recall_micro``, ``f1_micro``: from the true / false positives and
      false negatives pooled over every observed entry.

    Per-label precision, recall and F1 (and their macros) are `binary_metrics`'.
    """
    probs, target, observed = np.asarray(probs), np.asarray(target), np.asarray(observed)
    _check_same_shape(probs, target, observed)
    _check_names(thresholds, probs.shape[1], "thresholds")
    pred = (probs >= np.asarray(thresholds, dtype=np.float64)[None, :]).astype(np.int64)
    complete = observed.all(axis=1)
    out: dict[str, MetricValue] = {
        "exact_match": (
            float(skm.accuracy_score(target[complete].astype(np.int64), pred[complete]))
            if complete.any()
            else Undefined("no row with every label observed")
        ),
        "n_complete": float(complete.sum()),
    }
    y, p = target[observed].astype(np.int64), pred[observed]
    if not len(y):
        none = Undefined("no observed label")
        return {**out, **dict.fromkeys(MULTILABEL_METRICS[1:], none), "n_observed": 0.0}
    return {
        **out,
        "hamming_loss": float(skm.hamming_loss(y, p)),
        "precision_micro": _defined(
            skm.precision_score(y, p, zero_division=np.nan), "nothing predicted positive"
        ),
        "recall_micro": _defined(
            skm.recall_score(y, p, zero_division=np.nan), "no observed positive"
        ),
        "f1_micro": _defined(
            skm.f1_score(y, p, zero_division=np.nan), "no observed or predicted positive"
        ),
        "n_observed": float(len(y)),
    }


def _class_report(target: Array, pred: Array, classes: Sequence[str]) -> dict[str, MetricValue]:
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        target, pred, labels=np.arange(len(classes)), zero_division=np.nan
    )
    out: dict[str, MetricValue] = {}
    for i, name in enumerate(classes):
        out[f"precision/{name}"] = _defined(precision[i], "class never predicted")
        out[f"recall/{name}"] = _defined(recall[i], "class absent from observed targets")
        out[f"f1/{name}"] = _defined(f1[i], "class neither observed nor predicted")
        out[f"support/{name}"] = float(support[i])
    return out


def _check_multiclass(probs: Array, target: Array, observed: Array, classes: Sequence[str]) -> None:
    if probs.ndim != 2 or target.ndim != 1 or not probs.shape[:1] == target.shape == observed.shape:
        raise TaskmaskError(
            "expected probs (N, C), target (N,) and observed (N,), no broadcasting; got "
            f"probs {probs.shape}, target {target.shape}, observed {observed.shape}"
        )
    _check_observed(observed)
    _check_names(classes, probs.shape[1], "classes")
    y = target[observed]
    if not np.all((y >= 0) & (y < len(classes)) & (y == np.floor(y))):
        raise TaskmaskError(f"observed targets must be class indices 0..{len(classes) - 1}")


def _no_observed_class(classes: Sequence[str]) -> dict[str, MetricValue]:
    none = Undefined("no observed label")
    out: dict[str, MetricValue] = {"accuracy": none, "f1_macro": none, "f1_macro_n_labels": 0.0}
    for name in classes:
        out |= {f"precision/{name}": none, f"recall/{name}": none, f"f1/{name}": none}
        out[f"support/{name}"] = 0.0
    return out | {"n_observed": 0.0}


def multiclass_metrics(
    probs: Array, target: Array, observed: Array, *, classes: Sequence[str]
) -> dict[str, MetricValue]:
    """Accuracy, macro F1 and a per-class report of an argmax prediction.

    ``probs`` is ``(N, C)``; ``target`` (class indices) and ``observed`` (bool) are ``(N,)``.
    ``f1_macro`` averages the classes that appear in the observed targets (their count is
    ``f1_macro_n_labels``). Per class: ``precision/``, ``recall/``, ``f1/`` and ``support/``
    followed by the class name; ``n_observed`` counts observed rows.
    """
    probs, target, observed = np.asarray(probs), np.asarray(target), np.asarray(observed)
    _check_multiclass(probs, target, observed, classes)
    y, pred = target[observed].astype(np.int64), probs[observed].argmax(axis=1)
    if not len(y):
        return _no_observed_class(classes)
    present = np.unique(y)
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "f1_macro": float(skm.f1_score(y, pred, labels=present, average="macro")),
        "f1_macro_n_labels": float(len(present)),
        **_class_report(y, pred, classes),
        "n_observed": float(len(y)),
    }


_REGRESSION_REASONS = {
    "mse": "no observed label",
    "mae": "no observed label",
    "r2": "fewer than 2 observed labels or a constant observed target",
}


def regression_metrics(
    values: Array, target: Array, observed: Array, *, names: Sequence[str]
) -> dict[str, MetricValue]:
    """MSE, MAE and R² per output, with macros; all three arrays are ``(N, k)``."""
    values, target, observed = np.asarray(values), np.asarray(target), np.asarray(observed)
    _check_same_shape(values, target, observed)
    _check_names(names, values.shape[1], "names")
    preds, y, seen = _tensors(values.astype(np.float64), target.astype(np.float64), observed)
    counts = seen.sum(0)
    rows = _column_rows(columns.regression_errors(preds, y, seen), counts, _REGRESSION_REASONS)
    for row, count in zip(rows, counts.tolist(), strict=True):  # which of the two reasons holds
        if isinstance(row["r2"], Undefined) and count:
            few = "fewer than 2 observed labels"
            row["r2"] = Undefined(few if count < 2 else "constant observed target")
    return _per_label(rows, names, REGRESSION_METRICS)


def _count_output(rates: Array, target: Array) -> dict[str, MetricValue]:
    if not len(target):
        return {**dict.fromkeys(COUNT_METRICS, Undefined("no observed label")), "n_observed": 0.0}
    positive = np.maximum(rates, np.finfo(np.float64).tiny)  # exp underflow is a rate of 0+
    return {
        "poisson_deviance": float(skm.mean_poisson_deviance(target, positive)),
        "mae": float(skm.mean_absolute_error(target, rates)),
        "n_observed": float(len(target)),
    }


def count_metrics(
    rates: Array, target: Array, observed: Array, *, names: Sequence[str]
) -> dict[str, MetricValue]:
    """Mean Poisson deviance and MAE of predicted ``rates`` (> 0) per output, with macros;
    all three arrays are ``(N, k)``, ``target`` non-negative counts."""
    rates, target, observed = np.asarray(rates), np.asarray(target), np.asarray(observed)
    _check_same_shape(rates, target, observed)
    _check_names(names, rates.shape[1], "names")
    rows = [
        _count_output(rates[observed[:, j], j], target[observed[:, j], j])
        for j in range(rates.shape[1])
    ]
    return _per_label(rows, names, COUNT_METRICS)


def _best_f1_threshold(probs: Array, target: Array) -> float:
    if not target.any():
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(target, probs)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[0]  # thresholds increase: the smallest
    return float(thresholds[best])


def fit_thresholds(probs: Array, target: Array, observed: Array) -> tuple[float, ...]:
    """Per label, the threshold (``prob >= t`` is positive) that maximises F1 on observed entries.

    Ties go to the smallest such threshold; a label with no observed positive keeps 0.5.
    """
    probs, target, observed = np.asarray(probs), np.asarray(target), np.asarray(observed)
    _check_same_shape(probs, target, observed)
    return tuple(
        _best_f1_threshold(probs[observed[:, j], j], target[observed[:, j], j])
        for j in range(probs.shape[1])
    )


def to_jsonable(metrics: dict[str, MetricValue]) -> dict[str, float | dict[str, str]]:
    """Metrics for ``json.dumps``: ``Undefined(r)`` becomes ``{"undefined": r}``.

    >>> to_jsonable({"f1": 0.5, "roc_auc": Undefined("only one class observed")})
    {'f1': 0.5, 'roc_auc': {'undefined': 'only one class observed'}}
    """
    return {
        key: {"undefined": v.reason} if isinstance(v, Undefined) else float(v)
        for key, v in metrics.items()
    }


def metric_as_float(value: MetricValue) -> float:
    """The value as a float, NaN for `Undefined`: for CSV histories only, never for averaging."""
    return float("nan") if isinstance(value, Undefined) else float(value)


def summary_keys(values: Mapping[str, MetricValue]) -> list[str]:
    """Keys without a per-label part; a macro is left out where the plain key is there."""
    return [
        key
        for key in values
        if "/" not in key
        and not key.endswith("_n_labels")
        and not (key.endswith("_macro") and key.removesuffix("_macro") in values)
    ]
