"""``Y`` for the estimators: its columns as tasks (given or inferred), its labels in taskmask's
form, and the model's outputs back as ``Y``'s values (see `taskmask.sklearn` for what ``Y`` may
hold and which entries are missing)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.multiclass import check_classification_targets

from taskmask.app.config import TaskSpec
from taskmask.predict import TaskPrediction
from taskmask.tasks._masking import missing_cells
from taskmask.tasks._task import Task


@dataclass(frozen=True, eq=False)
class TaskColumns:
    """Which columns of ``Y`` a task reads, the classes of each (``None`` for regression), and
    the value besides NaN / None / blank that means missing there."""

    task: Task
    columns: tuple[str, ...]
    classes: tuple[np.ndarray | None, ...] = field(repr=False)
    sentinel: float | None


def target_frame(y: Any, n_samples: int, owner: str) -> tuple[pd.DataFrame, bool]:
    """``Y`` as a DataFrame with string column labels (``y`` / ``y0..`` for arrays) and whether
    it was 2-D."""
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None")
    if sp.issparse(y):
        raise ValueError(f"{owner}: y must be dense (NaN marks missing labels), got a sparse y")
    if isinstance(y, pd.DataFrame):
        frame, two_d = y.set_axis([str(c) for c in y.columns], axis=1), True
    elif isinstance(y, pd.Series):
        frame, two_d = y.to_frame("y" if y.name is None else str(y.name)), False
    else:
        array = np.asarray(y)
        if array.ndim not in (1, 2):
            raise ValueError(f"{owner}: y must be 1-D or 2-D, got shape {array.shape}")
        two_d = array.ndim == 2
        names = [f"y{j}" for j in range(array.shape[1])] if two_d else ["y"]
        frame = pd.DataFrame(array.reshape(len(array), -1), columns=names)
    if len(frame) != n_samples:
        raise ValueError(f"{owner}: X has {n_samples} rows but y has {len(frame)}")
    if frame.columns.duplicated().any():
        raise ValueError(f"{owner}: y has repeated column names {list(frame.columns)}")
    return frame.reset_index(drop=True), two_d


def observed_labels(column: pd.Series, sentinel: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``(missing, values)``: which rows are missing, as `taskmask.tasks.missing_cells` reads
    them (NaN, None, ``pd.NA``, blank text or ``sentinel``), and the observed values, with the
    dtype NumPy infers for them (ints stay ints). Infinity is an error."""
    missing = missing_cells(column, sentinel)
    values = column.to_numpy()[~missing]
    if values.dtype == object:
        values = np.asarray(values.tolist())
    if np.issubdtype(values.dtype, np.floating) and np.isinf(values).any():
        raise ValueError(f"Input y contains infinity: column {column.name!r}")
    return missing, values


def _numbers(values: np.ndarray) -> bool:
    """Whether ``values`` hold numbers (bool, integer or float)."""
    return values.dtype.kind in "biuf"


def _binary_classes(values: np.ndarray) -> np.ndarray:
    return np.array([0, 1]).astype(values.dtype if _numbers(values) else np.int64)


def _class_set(values: np.ndarray, name: str) -> np.ndarray:
    classes = np.unique(values)
    if len(classes) < 2:
        raise ValueError(f"column {name!r}: a classifier needs at least 2 classes, found 1 class")
    return classes


def _inferred(name: str, column: pd.Series, sentinel: float | None, classify: bool) -> TaskColumns:
    """One task for one column, its kind read from the observed values."""
    _, values = observed_labels(column, sentinel)
    if not len(values):
        raise ValueError(f"column {name!r} of y has no observed label")
    numeric = _numbers(values)
    if numeric and not classify:
        task = Task(name=name, kind="regression", sentinel=sentinel)
        return TaskColumns(task, (name,), (None,), sentinel)
    if numeric:
        check_classification_targets(values)
        if np.isin(values, (0, 1)).all():
            task = Task(name=name, kind="binary", sentinel=sentinel)
            return TaskColumns(task, (name,), (_binary_classes(values),), sentinel)
    classes = _class_set(values, name)
    labels = tuple(str(c) for c in classes)
    task = Task(name=name, kind="multiclass", labels=labels, sentinel=sentinel)
    return TaskColumns(task, (name,), (classes,), sentinel)


def _spec(entry: Task | Mapping[str, Any], names: Sequence[str]) -> TaskSpec:
    """A task spec; in a dict, ``column`` / ``columns`` may give positions in ``y``."""
    if isinstance(entry, Task):
        return entry if isinstance(entry, TaskSpec) else TaskSpec.model_validate(entry.model_dump())
    if not isinstance(entry, Mapping):
        raise ValueError(f"tasks: expected taskmask.Task objects or dicts, got {entry!r}")
    data = dict(entry)

    def label(key: Any) -> Any:
        position = int(key) if isinstance(key, numbers.Integral) else -1
        return names[position] if 0 <= position < len(names) else key

    if "column" in data:
        data["column"] = label(data["column"])
    if isinstance(data.get("columns"), Sequence):
        data["columns"] = [label(key) for key in data["columns"]]
    return TaskSpec.model_validate(data)


def _explicit(spec: TaskSpec, frame: pd.DataFrame) -> TaskColumns:
    """A user's task; its sentinel (-1 for class labels unless set) marks missing labels too."""
    task, source = spec.to_task(), spec.source
    columns = (source,) if isinstance(source, str) else source
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"task {task.name!r}: y has no column {absent}; y has {list(frame)}")
    sentinel = task.missing_sentinel
    seen = [observed_labels(frame[c], sentinel)[1] for c in columns]
    classes: tuple[np.ndarray | None, ...]
    targets = task.spec.targets
    if targets == "values":
        classes = (None,) * len(columns)
    elif targets == "flags":
        classes = tuple(_binary_classes(values) for values in seen)
    elif task.labels is not None:
        classes = (np.asarray(task.labels),)
    else:
        classes = (_class_set(seen[0], columns[0]),)
        task = task.model_copy(update={"labels": tuple(str(c) for c in classes[0])})
    return TaskColumns(task, columns, classes, sentinel)


def task_columns(
    frame: pd.DataFrame, tasks: Sequence[Any] | None, *, classify: bool, sentinel: float | None
) -> tuple[TaskColumns, ...]:
    """The given tasks, then one inferred task per column that none of them reads."""
    explicit = [_explicit(_spec(t, list(frame.columns)), frame) for t in tasks or ()]
    used = [c for entry in explicit for c in entry.columns]
    repeated = sorted({c for c in used if used.count(c) > 1})
    if repeated:
        raise ValueError(f"tasks: columns {repeated} are read by more than one task")
    rest = [c for c in frame.columns if c not in used]
    return (*explicit, *(_inferred(c, frame[c], sentinel, classify) for c in rest))


def taskmask_labels(entry: TaskColumns, frame: pd.DataFrame) -> np.ndarray:
    """Raw labels in taskmask's form: 0/1, class indices or values as floats, NaN if missing."""
    kind, spec, out = entry.task.kind, entry.task.spec, []
    for label, classes in zip(entry.columns, entry.classes, strict=True):
        missing, values = observed_labels(frame[label], entry.sentinel)
        if spec.targets == "classes":
            assert classes is not None
            lookup = {c: i for i, c in enumerate(classes.tolist())}
            unknown = [v for v in values.tolist() if v not in lookup]
            if unknown:
                raise ValueError(f"column {label!r}: class {unknown[0]!r} is not one of {lookup}")
            values = np.asarray([lookup[v] for v in values.tolist()], dtype=np.float64)
        elif not _numbers(values):
            raise ValueError(f"column {label!r}: a {kind} task needs numbers, got {values[0]!r}")
        codes = np.full(len(frame), np.nan)
        codes[~missing] = values
        out.append(codes)
    return np.stack(out, axis=1) if len(out) > 1 or spec.per_column else out[0]


def predicted_values(entry: TaskColumns, pred: TaskPrediction) -> list[np.ndarray]:
    """Per column: the predicted class (a value seen in ``y``) or the float64 value (the
    score: a regression value, a count's rate)."""
    targets = entry.task.spec.targets
    if targets == "values":
        return list(pred.scores.astype(np.float64).T)
    assert pred.decisions is not None
    if targets == "classes":
        return [cast(np.ndarray, entry.classes[0])[pred.decisions]]
    picks = pred.decisions.astype(np.int64).T
    return [cast(np.ndarray, c)[pick] for c, pick in zip(entry.classes, picks, strict=True)]


def predicted_probabilities(entry: TaskColumns, pred: TaskPrediction) -> list[np.ndarray | None]:
    """Per column ``(n_samples, n_classes)`` float64 probabilities; None for values."""
    scores = pred.scores.astype(np.float64)
    targets = entry.task.spec.targets
    if targets == "values":
        return [None] * len(entry.columns)
    if targets == "classes":
        return [scores / scores.sum(axis=1, keepdims=True)]
    return [np.column_stack([1.0 - p, p]) for p in scores.T]


def stack_columns(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Columns side by side; object dtype when numbers and text mix."""
    if len({_numbers(c) for c in columns}) > 1:
        columns = [c.astype(object) for c in columns]
    return np.column_stack(columns)
