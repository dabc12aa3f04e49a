"""The data boundary for labels: the only module that knows how "missing" is encoded.

Raw labels may mark a missing entry as NaN, None (``pd.NA``, ``NaT``), an empty (or blank)
string, or the task's sentinel (default `CLASS_SENTINEL`, -1, for class labels; a kind's spec
declares it). `missing_cells` is that rule on raw cells (the scikit-learn adapter reads it too);
`encode_labels` turns raw labels into two tensors:

- ``target``: flags (`encode_flags`) ``(N, k)`` float32 in {0, 1}; classes (`encode_classes`)
  ``(N,)`` int64 class indices; numbers (`encode_values`) ``(N, k)`` float32. Unobserved
  entries hold 0, never NaN.
- ``observed``: bool, the same shape; True where a label is present.

A kind reads its labels with its spec's ``encode`` (the built-in kinds use the encoders here),
by default `encode_values`; either way the result is checked and unobserved targets set to 0.

Downstream code (losses, metrics, weighting) reads only ``observed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from taskmask.errors import TaskmaskError
from taskmask.functional._labels import EncodedLabels
from taskmask.tasks._task import Task

CLASS_SENTINEL = -1.0
"""The raw value that means a missing class label when a task sets no ``sentinel``: the
default of the binary, multilabel and multiclass kinds (as in seed 000), written only here."""


def _array(raw: Any) -> np.ndarray:
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    if isinstance(raw, pd.DataFrame | pd.Series):
        raw = raw.to_numpy()
    return raw if isinstance(raw, np.ndarray) else np.asarray(raw, dtype=object)


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def missing_cells(raw: Any, sentinel: float | None = None) -> np.ndarray:
    """Which raw cells mean "missing", as a bool array of ``raw``'s shape: NaN, None, ``pd.NA``
    / ``NaT``, empty or blank text, and ``sentinel`` compared as a number (``-1``, ``-1.0`` and
    ``"-1"`` alike). Other text (a class name) is not missing. ``raw``: any array-like, a
    pandas Series / DataFrame or a tensor.

    >>> missing_cells([1, float("nan"), None, "", " ", -1, "-1", "cat"], -1).tolist()
    [False, True, True, True, True, True, True, False]
    """
    array = _array(raw)
    if any(np.issubdtype(array.dtype, number) for number in (np.bool_, np.integer, np.floating)):
        values = array.astype(np.float64)
        missing = np.isnan(values)
        return missing if sentinel is None else missing | (values == sentinel)
    cells = pd.Series(array.reshape(-1), dtype=object)
    missing = cells.isna() | cells.map(_blank).astype(bool)
    if sentinel is not None:
        missing |= pd.to_numeric(cells.mask(missing), errors="coerce") == sentinel
    return missing.to_numpy(dtype=bool).reshape(array.shape)


def _numeric(raw: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw labels as float64 plus a "missing" mask (`missing_cells`, no sentinel); text other
    than blanks is an error."""
    array = _array(raw)
    if array.dtype.kind in "biufO":
        try:
            values = array.astype(np.float64)
        except (TypeError, ValueError):
            pass
        else:
            return values, np.isnan(values)
    missing = missing_cells(array)
    cells = pd.Series(array.reshape(-1), dtype=object)
    numbers = pd.to_numeric(cells.mask(missing.reshape(-1)), errors="coerce").to_numpy(np.float64)
    bad = np.isnan(numbers) & ~missing.reshape(-1)
    if bad.any():
        index = int(np.argmax(bad))
        row = index // max(1, int(np.prod(array.shape[1:])))
        raise TaskmaskError(
            f"{where}: expected numbers or an empty cell, got {cells.iat[index]!r} at row {row}"
        )
    return numbers.reshape(array.shape), missing


def _as_2d(values: np.ndarray, width: int | None, where: str) -> np.ndarray:
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise TaskmaskError(f"{where}: expected labels of shape (N,) or (N, k), got {values.shape}")
    if width is not None and values.shape[1] != width:
        raise TaskmaskError(f"{where}: expected {width} label columns, got {values.shape[1]}")
    return values


def encode_flags(task: Task, raw: Any, where: str) -> EncodedLabels:
    """0/1 labels ``(N, k)``: float32 targets; another number is an error naming the label."""
    values, missing = _numeric(raw, where)
    known = task.labels or task.n_outputs or not task.spec.per_column
    width = task.width if known else None
    values, missing = _as_2d(values, width, where), _as_2d(missing, width, where)
    if task.missing_sentinel is not None:
        missing = missing | (values == task.missing_sentinel)
    observed = ~missing
    bad = observed & (values != 0) & (values != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise TaskmaskError(
            f"{where}: label {task.output_names[col] if width else col} has value "
            f"{float(values[row, col]):g} at row {row}; expected 0, 1 or missing"
        )
    target = np.where(observed, values, 0.0).astype(np.float32)
    return EncodedLabels(torch.from_numpy(target), torch.from_numpy(observed))


def class_names_from(task: Task, raw: Any) -> tuple[str, ...]:
    """Infer the class names of a multiclass task from its raw training labels."""
    cells = np.asarray(raw, dtype=object).ravel()
    series = pd.Series(cells[~missing_cells(cells, task.missing_sentinel)])
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().all():
        if (numeric < 0).any() or (numeric != numeric.round()).any():
            raise TaskmaskError(
                f"task {task.name!r}: numeric class labels must be indices 0..k-1, "
                f"got {sorted(numeric.unique())[:5]}"
            )
        n_classes = int(numeric.max()) + 1 if len(numeric) else 0
        return tuple(str(i) for i in range(task.n_outputs or n_classes))
    return tuple(sorted(str(v) for v in series.unique()))


def encode_classes(task: Task, raw: Any, where: str) -> EncodedLabels:
    """One class label per row, a name or an index: int64 targets ``(N,)``."""
    classes = task.labels
    if classes is None:
        raise TaskmaskError(f"{where}: class names are not known; resolve the task first")
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    array = np.asarray(raw, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise TaskmaskError(f"{where}: expected one class label per row, got shape {array.shape}")
    series = pd.Series(array)
    missing = pd.Series(missing_cells(array, task.missing_sentinel))
    numeric = pd.to_numeric(series.mask(missing), errors="coerce")
    by_index = numeric.notna()
    codes = np.full(len(series), -1, dtype=np.int64)
    names = series[~missing & ~by_index].astype(str)
    lookup = {name: code for code, name in enumerate(classes)}
    codes[names.index] = names.map(lookup).fillna(-1).astype(np.int64).to_numpy()
    index_rows = ~missing & by_index
    indices = numeric[index_rows]
    valid = (indices >= 0) & (indices < len(classes)) & (indices == indices.round())
    codes[indices.index[valid.to_numpy()]] = indices[valid].astype(np.int64)
    observed = ~missing.to_numpy()
    bad = observed & (codes < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise TaskmaskError(
            f"{where}: class {series.iat[row]!r} at row {row} is not one of {list(classes)} "
            f"(nor an index 0..{len(classes) - 1})"
        )
    return EncodedLabels(torch.from_numpy(np.where(observed, codes, 0)), torch.from_numpy(observed))


def encode_numbers(
    raw: Any, *, width: int | None, sentinel: float | None = None, source: str = "labels"
) -> EncodedLabels:
    """Raw numbers ``(N,)`` or ``(N, k)`` as float32 ``target`` ``(N, k)`` and ``observed``.

    NaN, None, blank text and ``sentinel`` are missing (target 0); other text, and numbers that
    overflow float32, are errors naming ``source``; ``width`` (when given) must equal ``k``.
    """
    values, missing = _numeric(raw, source)
    values, missing = _as_2d(values, width, source), _as_2d(missing, width, source)
    if sentinel is not None:
        missing = missing | (values == sentinel)
    observed = ~missing
    with np.errstate(over="ignore"):
        target = np.where(observed, values, 0.0).astype(np.float32)
    if np.isinf(target).any():
        raise TaskmaskError(
            f"{source}: targets must be finite float32 numbers or missing, found inf or overflow"
        )
    return EncodedLabels(torch.from_numpy(target), torch.from_numpy(observed))


def encode_values(task: Task, raw: Any, where: str) -> EncodedLabels:
    """`encode_numbers` with the task's width (once known) and sentinel."""
    known = task.labels or task.n_outputs or not task.spec.per_column
    width = task.width if known else None
    return encode_numbers(raw, width=width, sentinel=task.missing_sentinel, source=where)


def resolve_task(task: Task, raw: Any) -> Task:
    """Fill in what the training labels tell: class names (``targets="classes"``), the
    output count (``per_column``)."""
    spec = task.spec
    if spec.targets == "classes" and task.labels is None:
        classes = class_names_from(task, raw)
        if len(classes) < 2:
            raise TaskmaskError(
                f"task {task.name!r}: a {task.kind} task needs at least 2 classes, found {classes}"
            )
        return task.model_copy(update={"labels": classes, "n_outputs": None})
    if spec.per_column and task.labels is None and task.n_outputs is None:
        width = 1 if np.ndim(raw) == 1 else int(np.shape(raw)[1])
        return task.model_copy(update={"n_outputs": width})
    return task


def encode_labels(task: Task, raw: Any, *, source: str = "labels") -> EncodedLabels:
    """Turn raw labels of one task into ``(target, observed)``; see the module docstring.

    ``source`` names where the labels came from (a file, a column) for error messages.
    """
    where = f"{source}, task {task.name!r}"
    if len(raw) == 0:
        raise TaskmaskError(f"{where}: no rows")
    encode = task.spec.encode or encode_values
    encoded = encode(task, raw, where)
    target, observed = encoded.target, encoded.observed
    if not isinstance(target, torch.Tensor) or not isinstance(observed, torch.Tensor):
        raise TaskmaskError(f"{where}: kind {task.kind!r}: encode must return tensors")
    if observed.dtype != torch.bool or target.shape != observed.shape or len(target) != len(raw):
        raise TaskmaskError(
            f"{where}: kind {task.kind!r}: encode must return a target and a bool observed of "
            f"one shape with {len(raw)} rows; got target {tuple(target.shape)}, observed "
            f"{tuple(observed.shape)} {observed.dtype}"
        )
    return EncodedLabels(torch.where(observed, target, torch.zeros_like(target)), observed)
