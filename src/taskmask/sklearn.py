"""scikit-learn estimators: `MultiTaskClassifier` and `MultiTaskRegressor`, a thin adapter over
`taskmask.fit`, plus `make_masked_scorer` for cross-validation that ignores missing labels.

``Y`` is a 1-D or 2-D array, Series or DataFrame; each column is one output. A missing label is
NaN, None, ``pd.NA`` or a blank string (plus ``sentinel`` when given, or an explicit task's
sentinel). Columns that no entry of ``tasks`` names become one task each, kinds inferred:

- text (strings, objects): ``multiclass``, its classes the sorted observed values;
- `MultiTaskClassifier`: numbers in {0, 1} (or bools) ``binary``, other discrete numbers
  ``multiclass`` (continuous ones are an error, as in scikit-learn);
- `MultiTaskRegressor`: numbers ``regression``.

Class labels are values, never indices: ``predict`` returns the values seen in ``Y``. ``X`` may
be sparse: training and prediction densify one batch of rows at a time. The model trains in
float32; inference runs in float64, so that a row's output does not depend on the rows
predicted with it, and probabilities and regression values are float64.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import ValidationError
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted, validate_data

from taskmask.api import FitResult, _start_regression_at_mean, balance_tasks, fit, resolve_tasks
from taskmask.config import TaskSpec
from taskmask.data import MultiTaskData, split
from taskmask.masking import encode_labels
from taskmask.model import MultiTaskModel
from taskmask.predict import TaskPrediction, _task_prediction, raw_outputs
from taskmask.tasks import Task
from taskmask.trainer import TrainConfig, Trainer
from taskmask.trunks import MLPConfig, build_trunk

__all__ = [
    "MaskedScorer",
    "MultiTaskClassifier",
    "MultiTaskRegressor",
    "TaskColumns",
    "make_masked_scorer",
]

_DENSE_CHUNK = 2**23  # features x rows densified at once when predicting from sparse input


class _Rows:
    """A matrix (dense or CSR) that `MultiTaskData` and `raw_outputs` slice like a tensor:
    ``rows[index]`` densifies only the rows asked for, as a tensor of NumPy ``dtype`` on
    ``device``."""

    def __init__(
        self, matrix: Any, dtype: type = np.float32, device: torch.device | str = "cpu"
    ) -> None:
        self.matrix, self.dtype, self.device = matrix, dtype, torch.device(device)

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.matrix.shape)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> _Rows:
        return _Rows(self.matrix, self.dtype, device)

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = self.matrix[index.cpu().numpy() if isinstance(index, torch.Tensor) else index]
        dense: np.ndarray = np.array(rows.toarray() if sp.issparse(rows) else rows, self.dtype)
        return torch.from_numpy(dense).to(self.device)


def _sparse_standardization(matrix: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """`taskmask.api.standardization` for a sparse matrix, without densifying it."""
    mean, var = mean_variance_axis(matrix.astype(np.float64), axis=0)
    std = np.sqrt(var)
    return torch.from_numpy(mean).float(), torch.from_numpy(np.where(std > 0, std, 1.0)).float()


def _fit_sparse(
    matrix: sp.csr_matrix,
    labels: Mapping[str, Any],
    tasks: Sequence[Task],
    *,
    trunk: MLPConfig,
    standardize: bool,
    feature_names: Sequence[str] | None,
    config: TrainConfig,
) -> FitResult:
    """`taskmask.fit`'s steps for a CSR matrix, whose rows are densified one batch at a time."""
    tasks = resolve_tasks(tasks, labels)
    encoded = {t.name: encode_labels(t, labels[t.name], source="training data") for t in tasks}
    rows = MultiTaskData(torch.arange(matrix.shape[0]), encoded)  # row numbers stand for rows
    held = None
    if config.validation_split > 0:
        generator = torch.Generator().manual_seed(config.seed)
        rows, held = split(rows, config.validation_split, generator=generator)

    def densified(part: MultiTaskData) -> MultiTaskData:
        return MultiTaskData(cast(torch.Tensor, _Rows(matrix[part.inputs.numpy()])), part.labels)

    train, val = densified(rows), (densified(held) if held is not None else None)
    tasks = balance_tasks(tasks, train)
    kept = cast(_Rows, train.inputs).matrix
    mean, scale = _sparse_standardization(kept) if standardize else (None, None)
    torch.manual_seed(config.seed)
    shape = (int(matrix.shape[1]),)
    model = MultiTaskModel(
        build_trunk(trunk, shape),
        tasks,
        shape,
        input_mean=mean,
        input_scale=scale,
        feature_names=feature_names,
    )
    _start_regression_at_mean(model, train)
    trainer = Trainer(config.model_copy(update={"validation_split": 0.0}))
    history = trainer.fit(model, train, validation=val)
    return FitResult(model, pd.DataFrame(history), trainer)


@dataclass(frozen=True, eq=False)
class TaskColumns:
    """Which columns of ``Y`` a task reads, the classes of each (``None`` for regression), and
    the value besides NaN / None / blank that means missing there."""

    task: Task
    columns: tuple[str, ...]
    classes: tuple[np.ndarray | None, ...] = field(repr=False)
    sentinel: float | None


def _target_frame(y: Any, n_samples: int, owner: str) -> tuple[pd.DataFrame, bool]:
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


def _missing(column: pd.Series, sentinel: float | None) -> np.ndarray:
    missing = column.isna().to_numpy(dtype=bool)
    if column.dtype.kind == "O":  # object or text: a blank string is missing too
        blank = column.map(lambda v: isinstance(v, str) and not v.strip())
        missing = missing | blank.to_numpy(bool)
    if sentinel is not None:
        missing = missing | (pd.to_numeric(column, errors="coerce") == sentinel).to_numpy(bool)
    return missing


def _observed(column: pd.Series, missing: np.ndarray) -> np.ndarray:
    """The observed values, with the dtype NumPy infers for them (ints stay ints)."""
    values = column.to_numpy()[~missing]
    if values.dtype == object:
        values = np.asarray(values.tolist())
    if values.dtype.kind == "f" and np.isinf(values).any():
        raise ValueError(f"Input y contains infinity: column {column.name!r}")
    return values


def _binary_classes(values: np.ndarray) -> np.ndarray:
    return np.array([0, 1]).astype(values.dtype if values.dtype.kind in "biuf" else np.int64)


def _class_set(values: np.ndarray, name: str) -> np.ndarray:
    classes = np.unique(values)
    if len(classes) < 2:
        raise ValueError(f"column {name!r}: a classifier needs at least 2 classes, found 1 class")
    return classes


def _inferred(name: str, column: pd.Series, sentinel: float | None, classify: bool) -> TaskColumns:
    """One task for one column, its kind read from the observed values."""
    values = _observed(column, _missing(column, sentinel))
    if not len(values):
        raise ValueError(f"column {name!r} of y has no observed label")
    numeric = values.dtype.kind in "biuf"
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
    seen = [_observed(frame[c], _missing(frame[c], sentinel)) for c in columns]
    classes: tuple[np.ndarray | None, ...]
    if task.kind == "regression":
        classes = (None,) * len(columns)
    elif task.kind != "multiclass":
        classes = tuple(_binary_classes(values) for values in seen)
    elif task.labels is not None:
        classes = (np.asarray(task.labels),)
    else:
        classes = (_class_set(seen[0], columns[0]),)
        task = task.model_copy(update={"labels": tuple(str(c) for c in classes[0])})
    return TaskColumns(task, columns, classes, sentinel)


def _layout(
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


def _taskmask_labels(entry: TaskColumns, frame: pd.DataFrame) -> np.ndarray:
    """Raw labels in taskmask's form: 0/1, class indices or values as floats, NaN if missing."""
    kind, out = entry.task.kind, []
    for label, classes in zip(entry.columns, entry.classes, strict=True):
        missing = _missing(frame[label], entry.sentinel)
        values = _observed(frame[label], missing)
        if kind == "multiclass":
            assert classes is not None
            lookup = {c: i for i, c in enumerate(classes.tolist())}
            unknown = [v for v in values.tolist() if v not in lookup]
            if unknown:
                raise ValueError(f"column {label!r}: class {unknown[0]!r} is not one of {lookup}")
            values = np.asarray([lookup[v] for v in values.tolist()], dtype=np.float64)
        elif values.dtype.kind not in "biuf":
            raise ValueError(f"column {label!r}: a {kind} task needs numbers, got {values[0]!r}")
        codes = np.full(len(frame), np.nan)
        codes[~missing] = values
        out.append(codes)
    return np.stack(out, axis=1) if len(out) > 1 or kind == "multilabel" else out[0]


def _decoded(entry: TaskColumns, pred: TaskPrediction) -> list[np.ndarray]:
    """Per column: the predicted class (a value seen in ``y``) or the float64 value."""
    if entry.task.kind == "regression":
        return list(pred.scores.astype(np.float64).T)
    assert pred.decisions is not None
    if entry.task.kind == "multiclass":
        return [cast(np.ndarray, entry.classes[0])[pred.decisions]]
    picks = pred.decisions.astype(np.int64).T
    return [cast(np.ndarray, c)[pick] for c, pick in zip(entry.classes, picks, strict=True)]


def _probabilities(entry: TaskColumns, pred: TaskPrediction) -> list[np.ndarray | None]:
    """Per column ``(n_samples, n_classes)`` float64 probabilities; None for regression."""
    scores = pred.scores.astype(np.float64)
    if entry.task.kind == "regression":
        return [None] * len(entry.columns)
    if entry.task.kind == "multiclass":
        return [scores / scores.sum(axis=1, keepdims=True)]
    return [np.column_stack([1.0 - p, p]) for p in scores.T]


def _stack(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Columns side by side; object dtype when numbers and text mix."""
    if len({c.dtype.kind in "biuf" for c in columns}) > 1:
        columns = [c.astype(object) for c in columns]
    return np.column_stack(columns)


def _seed(random_state: Any) -> int:
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class _MultiTaskEstimator(BaseEstimator):  # type: ignore[misc]
    """What `MultiTaskClassifier` and `MultiTaskRegressor` share; see their docstrings."""

    _classify = False

    def __init__(
        self,
        tasks: Sequence[Task | Mapping[str, Any]] | None = None,
        *,
        hidden: int | Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        weighting: str = "static",
        weighting_options: Mapping[str, Any] | None = None,
        standardize: bool = True,
        validation_split: float = 0.0,
        patience: int | None = None,
        sentinel: float | None = None,
        random_state: Any = None,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.tasks = tasks
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.weighting = weighting
        self.weighting_options = weighting_options
        self.standardize = standardize
        self.validation_split = validation_split
        self.patience = patience
        self.sentinel = sentinel
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags

    def _settings(self) -> tuple[MLPConfig, TrainConfig]:
        """The parameters as taskmask's validated configs (a bad value is a ValueError)."""
        hidden = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else self.hidden
        stopping = None if self.patience is None else {"patience": self.patience}
        trunk = {"hidden": hidden, "activation": self.activation, "dropout": self.dropout}
        training = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "optimizer": self.optimizer,
            "weighting": self.weighting,
            "weighting_options": dict(self.weighting_options or {}),
            "validation_split": self.validation_split,
            "early_stopping": stopping,
            "seed": _seed(self.random_state),
            "device": self.device,
            "progress": bool(self.verbose),
            "train_metrics": False,
        }
        try:
            return MLPConfig.model_validate(trunk), TrainConfig.model_validate(training)
        except ValidationError as error:
            raise ValueError(f"{type(self).__name__}: invalid parameters:\n{error}") from None

    def fit(self, X: Any, y: Any) -> Self:
        """Train on ``X`` ``(n_samples, n_features)``, dense or sparse, and ``y`` with missing
        labels (see the module docstring); returns ``self``."""
        trunk, config = self._settings()
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32)
        frame, self.outputs_2d_ = _target_frame(y, X.shape[0], type(self).__name__)
        layout = _layout(frame, self.tasks, classify=self._classify, sentinel=self.sentinel)
        labels = {entry.task.name: _taskmask_labels(entry, frame) for entry in layout}
        tasks = [entry.task for entry in layout]
        names = getattr(self, "feature_names_in_", None)
        options: dict[str, Any] = {
            "trunk": trunk,
            "standardize": self.standardize,
            "feature_names": None if names is None else [str(n) for n in names],
            "config": config,
        }
        train = _fit_sparse if sp.issparse(X) else fit
        result = train(X, labels, tasks, **options)
        self.model_ = result.model.cpu().eval()
        self.history_ = result.history
        self.tasks_ = self.model_.tasks
        self.layout_ = tuple(replace(e, task=self.model_.task(e.task.name)) for e in layout)
        self.target_names_ = tuple(frame.columns)
        self.n_outputs_ = len(self.target_names_)
        return self

    def _outputs(self, X: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
        """Per column of ``y``: the predictions and the class probabilities."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        # float64 inference from the float32 weights: a row's output does not depend on batching
        model = copy.deepcopy(self.model_).double()
        chunk = max(1, min(4096, _DENSE_CHUNK // X.shape[1]))
        outputs = raw_outputs(model, cast(torch.Tensor, _Rows(X, np.float64)), batch_size=chunk)
        decoded: dict[str, np.ndarray] = {}
        probabilities: dict[str, np.ndarray | None] = {}
        for entry in self.layout_:
            pred = _task_prediction(entry.task, outputs[entry.task.name])
            decoded.update(zip(entry.columns, _decoded(entry, pred), strict=True))
            probabilities.update(zip(entry.columns, _probabilities(entry, pred), strict=True))
        return decoded, probabilities

    def predict(self, X: Any) -> np.ndarray:
        """Class values or float64 values: ``(n_samples,)`` for a 1-D ``y``, else
        ``(n_samples, n_outputs)`` in the column order of ``y``."""
        decoded, _ = self._outputs(X)
        stacked = _stack([decoded[name] for name in self.target_names_])
        return stacked if self.outputs_2d_ else stacked[:, 0]


class MultiTaskClassifier(ClassifierMixin, _MultiTaskEstimator):  # type: ignore[misc]
    """Multi-task classifier that learns from ``y`` with missing labels: a shared MLP trunk and
    one head per task, trained by `taskmask.fit` (see the module docstring for ``y``).

    Parameters (keyword-only except ``tasks``; each is checked when `fit` runs):
        tasks: None (default: a task per column, kind inferred) or a list of `taskmask.Task`
            objects or dicts of its fields plus ``column`` / ``columns`` (column names, or
            positions in an array ``y``; default: the column named like the task), e.g.
            ``{"name": "scene", "kind": "multilabel", "columns": ["sea", "sunset"]}``. Columns
            no task names are inferred. Class labels are values, never indices.
        hidden: int or sequence of ints >= 1, default (64, 64): the trunk's layer widths.
        activation: "relu" (default), "gelu", "tanh", "silu", "leaky_relu" or "elu".
        dropout: float in [0, 1), default 0.0.
        epochs: int >= 1, default 100.
        batch_size: int >= 1, default 256.
        lr: float > 0, default 1e-3: the learning rate.
        weight_decay: float >= 0, default 0.0.
        optimizer: "adam" (default), "adamw" or "sgd".
        weighting: how task losses combine, a name in `taskmask.weighting.WEIGHTINGS`:
            "static" (default: each task's ``weight``), "uncertainty", "dwa", "gradnorm",
            "famo", or (with the ``jd`` extra) "upgrad", "mgda", "pcgrad", "cagrad", "nash_mtl".
        weighting_options: dict or None (default): keyword options of the weighting.
        standardize: bool, default True: scale each feature by its training mean and standard
            deviation inside the model (sparse ``X`` is never densified whole).
        validation_split: float in [0, 1), default 0.0: share of the rows held out, seeded;
            ``history_`` then has ``val/...`` losses and metrics.
        patience: int >= 1 or None (default): stop when ``val/loss`` has not improved for this
            many epochs and keep the best epoch's weights; needs ``validation_split > 0``.
        sentinel: float or None (default): a value that also means missing in inferred columns
            (explicit tasks use their own ``sentinel``: -1 for class labels by default).
        random_state: None (default), int or `numpy.random.RandomState`: seeds training; an int
            gives the same model on every fit on one machine.
        device: "auto" (default: CUDA when available), "cpu", "cuda", ... (``model_`` is
            moved to the CPU after training).
        verbose: bool, default False: show a progress bar.

    Attributes:
        model_: the trained `taskmask.MultiTaskModel` (``taskmask.save_model`` saves it).
        history_: one row per epoch (`pandas.DataFrame`): losses, task weights, validation.
        tasks_: the tasks, resolved. layout_: a `TaskColumns` per task.
        target_names_: the columns of ``y`` (``y`` / ``y0``, ``y1``, ... for arrays).
        classes_: the classes of a 1-D ``y``, else a list with one array per column.
        n_outputs_, outputs_2d_, n_features_in_, feature_names_in_ (DataFrame ``X`` only).

    Example:
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> y = np.array([[0, "a"], [np.nan, "b"], [1, None], [1, "b"]], dtype=object)
        >>> clf = MultiTaskClassifier(hidden=8, epochs=5, random_state=0).fit(X, y)
        >>> [c.tolist() for c in clf.classes_], clf.predict(X).shape
        ([[0, 1], ['a', 'b']], (4, 2))
    """

    _classify = True

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X: Any, y: Any) -> Self:
        super().fit(X, y)
        by_column = {c: k for e in self.layout_ for c, k in zip(e.columns, e.classes, strict=True)}
        classes = [by_column[name] for name in self.target_names_]
        self.classes_ = classes if self.outputs_2d_ else classes[0]
        return self

    def predict_proba(self, X: Any) -> Any:
        """``(n_samples, n_classes)`` float64 probabilities for a 1-D ``y``, else a list with
        one such array per column of ``y`` (``None`` for a regression column)."""
        _, probabilities = self._outputs(X)
        columns = [probabilities[name] for name in self.target_names_]
        return columns if self.outputs_2d_ else columns[0]

    def score(self, X: Any, y: Any) -> float:
        """Mean over tasks of accuracy (a multilabel task's: the mean over its labels; R² for a
        regression task) on observed labels only; see `MaskedScorer`."""
        return MaskedScorer()(self, X, y)


class MultiTaskRegressor(RegressorMixin, _MultiTaskEstimator):  # type: ignore[misc]
    """Multi-task regressor that learns from ``y`` with missing labels: numeric columns are
    regression tasks, text columns multiclass ones. Parameters and attributes are those of
    `MultiTaskClassifier` (no ``classes_``, no ``predict_proba``).

    Example:
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> y = np.array([[0.0, 1.0], [np.nan, 3.0], [2.0, np.nan], [3.0, 7.0]])
        >>> reg = MultiTaskRegressor(hidden=8, epochs=5, random_state=0).fit(X, y)
        >>> reg.predict(X).shape, reg.predict(X).dtype
        ((4, 2), dtype('float64'))
    """

    def score(self, X: Any, y: Any) -> float:
        """Mean over tasks of R² (a task's: the mean over its outputs; accuracy for a class
        task) on observed labels only; see `MaskedScorer`."""
        return MaskedScorer()(self, X, y)


@dataclass(frozen=True)
class MaskedScorer:
    """A scorer ``(estimator, X, y) -> float`` for ``cross_val_score`` and ``GridSearchCV``
    that ignores missing labels: per column of ``y``, ``metric(y_true, y_pred, **kwargs)`` on
    its observed rows; the mean over a task's columns, then over tasks (a column or task with
    nothing observed, or a NaN metric, is left out; NaN when nothing is left). ``metric=None``
    is accuracy for class columns and R² for regression ones: the estimators' ``score``.
    Build one with `make_masked_scorer`."""

    metric: Callable[..., float] | None = None
    response_method: str = "predict"
    sign: float = 1.0
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def _responses(self, estimator: Any, X: Any, fitted: _MultiTaskEstimator) -> dict[str, Any]:
        """Per column of ``y``: what ``metric`` compares with the truth."""
        if self.response_method not in ("predict", "predict_proba"):
            raise ValueError(
                f"response_method must be 'predict' or 'predict_proba', got "
                f"{self.response_method!r}"
            )
        names, two_d = fitted.target_names_, fitted.outputs_2d_
        probabilities = [None] * len(names)
        if self.response_method == "predict_proba":
            if not hasattr(estimator, "predict_proba"):
                raise ValueError(f"{type(estimator).__name__} has no predict_proba")
            probabilities = estimator.predict_proba(X) if two_d else [estimator.predict_proba(X)]
        responses: dict[str, Any] = {}
        if any(p is None for p in probabilities):
            predictions = estimator.predict(X)
            predictions = predictions if two_d else predictions[:, None]
            for j, name in enumerate(names):  # an object column (numbers mixed with text) as
                responses[name] = np.asarray(predictions[:, j].tolist())  # its own dtype
        for name, proba in zip(names, probabilities, strict=True):
            if proba is not None:
                responses[name] = proba[:, 1] if proba.shape[1] == 2 else proba
        return responses

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        """``estimator``: a fitted taskmask estimator, or a `Pipeline` / search ending in one."""
        fitted = _fitted_estimator(estimator)
        responses = self._responses(estimator, X, fitted)
        n_samples = len(next(iter(responses.values())))
        frame, _ = _target_frame(y, n_samples, type(fitted).__name__)
        if tuple(frame.columns) != fitted.target_names_:
            raise ValueError(f"y has columns {list(frame)}; expected {fitted.target_names_}")
        per_task = []
        for entry in fitted.layout_:
            regression = entry.task.kind == "regression"
            metric = self.metric or (r2_score if regression else accuracy_score)
            values = []
            for name in entry.columns:
                missing = _missing(frame[name], entry.sentinel)
                if not missing.all():
                    truth = _observed(frame[name], missing)
                    values.append(float(metric(truth, responses[name][~missing], **self.kwargs)))
            defined = [v for v in values if not np.isnan(v)]
            if defined:
                per_task.append(float(np.mean(defined)))
        return self.sign * float(np.mean(per_task)) if per_task else float("nan")


def _fitted_estimator(estimator: Any) -> _MultiTaskEstimator:
    """The taskmask estimator at the end of a `Pipeline` or inside a fitted search."""
    found = estimator
    while not isinstance(found, _MultiTaskEstimator):
        if hasattr(found, "steps"):
            found = found.steps[-1][1]
        elif hasattr(found, "best_estimator_"):
            found = found.best_estimator_
        else:
            raise ValueError(f"no taskmask estimator found in {type(estimator).__name__}")
    check_is_fitted(found)
    return found


def make_masked_scorer(
    metric: Callable[..., float],
    *,
    response_method: str = "predict",
    greater_is_better: bool = True,
    **kwargs: Any,
) -> MaskedScorer:
    """A scorer that ignores missing labels (see `MaskedScorer`); ``kwargs`` go to ``metric``.

    ``response_method`` is ``"predict"`` (default) or ``"predict_proba"``: a two-class column
    then gets the positive class's probability, a multiclass column the probability matrix;
    regression columns always get predictions. ``greater_is_better=False`` negates the score,
    as scikit-learn's ``neg_*`` scorers do.

    Example:
        >>> import numpy as np
        >>> from sklearn.metrics import balanced_accuracy_score
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> y = np.array([0.0, np.nan, 1.0, 1.0])
        >>> clf = MultiTaskClassifier(hidden=8, epochs=5, random_state=0).fit(X, y)
        >>> scorer = make_masked_scorer(balanced_accuracy_score)
        >>> 0.0 <= scorer(clf, X, y) <= 1.0
        True
    """
    sign = 1.0 if greater_is_better else -1.0
    return MaskedScorer(metric, response_method, sign, dict(kwargs))
