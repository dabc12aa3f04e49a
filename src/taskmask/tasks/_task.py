"""Task specifications and the kind registry.

A `Task` is plain, validated data (pydantic): it is written to the model's JSON and read back
without executing anything. Its ``kind`` names a `TaskKindSpec` in the registry. The built-in
kinds (`taskmask.tasks.kinds`: binary, multilabel, multiclass, regression, count) are specs
registered with the same `register_kind` a user calls, when `taskmask.tasks` is imported.

A saved model stores only the kind's name: `taskmask.load_model` rebuilds such a task from the
spec registered in the loading process (an unregistered kind is an error naming it); nothing is
ever executed from the files. `Task`, `TaskKindSpec` and the registry's lookups share this
module because validating a task reads the registry and a spec's hooks take tasks; changing
the registry (`register_kind`, `unregister_kind`) is `taskmask.tasks._registry`.

Contract of a spec's functions (a missing label means ``observed == False``):

- ``loss(input, target, observed) -> LossTerm(sum, count)``: the sum of the elementwise loss
  over observed entries and how many there were. A missing entry must add nothing and get
  exactly zero gradient whatever its target holds; with nothing observed the sum is an exact,
  graph-connected 0. Select with ``torch.where``, never multiply a loss that may be NaN.
- ``metrics(scores, target, observed) -> {name: float | Undefined}``: numpy arrays (``scores``
  is what ``scores`` makes of the head's output, in float64); only observed entries may count.
- ``encode(task, raw, where) -> EncodedLabels``: ``target`` and a bool ``observed`` of the
  same shape, one row per raw row; ``where`` names the data and task for error messages.
  Default: `taskmask.tasks.encode_numbers` (NaN / None / blank / ``task.sentinel`` missing).

`taskmask.testing.check_kind` checks these contracts on a spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from torch import nn

from taskmask.errors import TaskmaskError, invalid_fields
from taskmask.functional._labels import EncodedLabels
from taskmask.functional._losses import LossTerm
from taskmask.functional._metrics import MetricValue
from taskmask.tasks._missing_labels import (
    MissingLabels,
    check_partial_label_options,
)

Targets = Literal["flags", "classes", "values"]
Option = Literal["pos_weight", "missing_labels", "loss"]
Decisions = tuple[np.ndarray | None, list[Any] | None]
TaskLossFn = Callable[
    ["Task", torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], LossTerm
]
TaskMetricsFn = Callable[["Task", np.ndarray, np.ndarray, np.ndarray], Mapping[str, MetricValue]]
ColumnsFn = Callable[["Task", np.ndarray, np.ndarray | None, list[Any] | None], dict[str, Any]]


def declared_width(task: Task) -> int:
    """The number of ``labels``, else ``n_outputs``, else 1."""
    if task.labels is not None:
        return len(task.labels)
    return task.n_outputs or 1


def indexed_names(task: Task, width: int) -> tuple[str, ...]:
    """``labels``, else ``(name,)`` for one output, else ``name_0..``."""
    if task.labels is not None:
        return task.labels
    return (task.name,) if width == 1 else tuple(f"{task.name}_{i}" for i in range(width))


@dataclass(frozen=True)
class TaskKindSpec:
    """A task kind: its loss, metrics and every way it differs from other kinds.

    Required: ``loss``, ``metrics`` and ``summary``, the metric key that sums a task up (among
    the keys ``metrics`` returns, or its ``_macro``); ``higher_is_better`` is its direction.
    Every other field has a default that suits a kind of numeric targets:

    - ``width(task)``: the head's outputs (`declared_width`); ``output_names(task)``: their
      names (default `indexed_names`); ``head(task, in_features)``: the head module
      (``nn.Linear``).
    - ``targets``: ``"flags"`` (0/1 per output: statistics count positives, coverage reports
      them), ``"classes"`` (one class index per row, one column, one output per class) or
      ``"values"`` (numbers); ``per_column``: one output per label column (a run config's
      ``columns`` name them, the training labels' columns count them).
    - ``sentinel``: the raw value that means missing when ``task.sentinel`` is not set;
      ``options``: the `Task` options the kind reads (``pos_weight``, ``missing_labels``,
      ``loss``); ``check(task)``: raise ``ValueError`` for an impossible task.
    - ``encode(task, raw, where)``: see the module docstring.
    - ``task_loss(task, input, target, observed, pos_weight)`` / ``task_metrics(task, scores,
      target, observed)``: ``loss`` / ``metrics`` with the task's options (default: those).
    - ``scores(task, output)``: what predictions report and metrics read (probabilities,
      rates; default the output); ``decide(scores)`` or ``decisions(task, scores) ->
      (decisions, names)``: decisions for `taskmask.predict`; ``columns(task, scores,
      decisions, names)``: `taskmask.predictions_frame` columns by suffix (default ``output``
      and ``pred``).
    - ``initial_bias(task, counts, sums)``: the head's starting bias from the observed counts
      and target sums of the training labels (default: left as initialised).
    - ``packs``: its loss is a plain masked BCE that the batch loss may pack with others;
      ``tunes_thresholds``: `taskmask.tune_thresholds` fits ``task.threshold`` on its scores;
      ``lower_is_better``: its metric names where lower is better.
    """

    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossTerm]
    metrics: Callable[[np.ndarray, np.ndarray, np.ndarray], Mapping[str, MetricValue]]
    summary: str
    higher_is_better: bool = True
    width: Callable[[Task], int] = declared_width
    output_names: Callable[[Task], tuple[str, ...]] | None = None
    encode: Callable[[Task, Any, str], EncodedLabels] | None = None
    head: Callable[[Task, int], nn.Module] | None = None
    decide: Callable[[np.ndarray], np.ndarray] | None = None
    targets: Targets = "values"
    per_column: bool = False
    sentinel: float | None = None
    options: frozenset[Option] = frozenset()
    check: Callable[[Task], None] | None = None
    task_loss: TaskLossFn | None = None
    task_metrics: TaskMetricsFn | None = None
    scores: Callable[[Task, torch.Tensor], torch.Tensor] | None = None
    decisions: Callable[[Task, np.ndarray], Decisions] | None = None
    columns: ColumnsFn | None = None
    initial_bias: Callable[[Task, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    packs: bool = False
    tunes_thresholds: bool = False
    lower_is_better: tuple[str, ...] = ()


_REGISTRY: dict[str, TaskKindSpec] = {}
_BUILTINS: set[str] = set()


def builtin_kinds() -> tuple[str, ...]:
    """The kinds of `taskmask.tasks.kinds`, in registration order."""
    return tuple(name for name in _REGISTRY if name in _BUILTINS)


def known_kinds() -> tuple[str, ...]:
    """The built-in kinds in registration order, then the others in name order."""
    builtins = [name for name in _REGISTRY if name in _BUILTINS]
    return (*builtins, *sorted(set(_REGISTRY) - _BUILTINS))


def get_kind(name: str) -> TaskKindSpec:
    """The spec of a registered kind; `TaskmaskError` naming the known kinds otherwise."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise TaskmaskError(
            f"kind {name!r} is not registered in this process; known kinds: "
            f"{list(known_kinds())} (register it with taskmask.register_kind)"
        )
    return spec


def make_head(task: Task, in_features: int) -> nn.Module:
    """The head of ``task``: its kind's ``head`` if it has one, else a linear layer."""
    spec = task.spec
    if spec.head is None:
        return nn.Linear(in_features, task.width)
    return spec.head(task, in_features)


TaskKind = Literal["binary", "multilabel", "multiclass", "regression", "count"]
RegressionLoss = Literal["mse", "l1", "huber"]


def _kinds_reading(option: Option) -> str:
    kinds = [name for name in known_kinds() if option in _REGISTRY[name].options]
    return " and ".join(kinds) if len(kinds) < 3 else ", ".join(kinds)


class Task(BaseModel):
    """One task of a multi-task model.

    ``name`` is any non-empty string, a column name with dots included (its head's key escapes
    them: `taskmask.model._heads.head_key`); two tasks whose prediction columns
    ``<task>.<suffix>`` would coincide are refused when their model is built. ``labels`` names
    the outputs: the labels of a multilabel task, the classes of a multiclass
    task, the output names of a regression task (default ``name`` or ``name_0..``). ``weight`` is
    the task's static loss weight (Keras ``loss_weights`` semantics). ``sentinel`` is the raw
    value that means "missing" besides NaN / None / empty (default: the kind's, -1 for class
    labels, as in seed 000; none for regression and counts). ``pos_weight`` (binary /
    multilabel) is one number, one per label, or ``"balanced"`` (negatives / positives per
    label, counted on observed training labels). ``attach_to`` names a trunk submodule whose
    output feeds this head (default: the trunk's output). ``auxiliary`` tasks regularise
    training only.

    ``missing_labels`` (multilabel only; ``docs/partial_labels.md``) treats a missing label of a
    row that has some observed label of the task as: ``ignore`` (default), ``negative``,
    ``weak_negative`` (a negative of weight ``negative_weight``, default ``1 / (k - 1)``), or
    ``expected_positive`` (no loss, plus ``expected_positive_weight`` (default ``k``) times the
    squared gap to ``expected_positives`` per row, which is required); Cole et al. 2021. The
    single-positive losses of `taskmask.functional` (their options in ``missing_label_options``,
    ranges in `PARTIAL_LABEL_OPTIONS`): ``smoothed_negative`` (AN-LS, ``epsilon`` 0.1),
    ``entropy_max`` (EM, ``alpha`` 0.1), ``large_loss_rejection`` (LL-R, ``delta_rel`` 0.002 per
    epoch done, the epoch passed by the trainer) and ``asymmetric`` (ASL with the missing labels
    as negatives; ``gamma_pos`` 0, ``gamma_neg`` 4, ``clip`` 0.05).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: str  # a registered kind: a TaskKind or one from taskmask.register_kind
    labels: tuple[str, ...] | None = None
    n_outputs: int | None = Field(default=None, ge=1)
    weight: float = Field(default=1.0, ge=0.0)
    sentinel: float | None = None
    pos_weight: float | tuple[float, ...] | Literal["balanced"] | None = None
    loss: RegressionLoss = "mse"
    huber_delta: float = Field(default=1.0, gt=0.0)
    attach_to: str | None = None
    auxiliary: bool = False
    threshold: float | tuple[float, ...] = 0.5
    missing_labels: MissingLabels = "ignore"
    negative_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    expected_positives: float | None = Field(default=None, gt=0.0)
    expected_positive_weight: float | None = Field(default=None, ge=0.0)
    missing_label_options: dict[str, float] | None = None

    def __init__(self, **data: Any) -> None:
        """Validate; bad fields raise `taskmask.errors.InvalidFieldsError` (a `TaskmaskError`
        and a pydantic ``ValidationError``) naming the task and each field."""
        try:
            super().__init__(**data)
        except ValidationError as error:
            where = f"task {data.get('name')!r}"
            raise invalid_fields(error, source=where, root=type(self), raw=data) from None

    @field_validator("threshold")
    @classmethod
    def _probability(cls, threshold: float | tuple[float, ...]) -> float | tuple[float, ...]:
        values = threshold if isinstance(threshold, tuple) else (threshold,)
        if not all(0.0 <= v <= 1.0 for v in values):  # NaN fails both comparisons
            raise ValueError("each threshold must be a probability in [0, 1]")
        return threshold

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str, info: ValidationInfo) -> str:
        if kind in _REGISTRY:
            return kind
        raise ValueError(
            f"task {info.data.get('name')!r}: unknown kind {kind!r}; known kinds: "
            f"{list(known_kinds())} (register a user-defined kind with taskmask.register_kind)"
        )

    @model_validator(mode="after")
    def _check(self) -> Task:
        where = f"task {self.name!r}"
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{where}: label names must be unique, got {list(self.labels)}")
        if self.labels and self.n_outputs and len(self.labels) != self.n_outputs:
            raise ValueError(
                f"{where}: {len(self.labels)} label names but n_outputs={self.n_outputs}"
            )
        spec = self.spec
        if self.pos_weight is not None and "pos_weight" not in spec.options:
            raise ValueError(
                f"{where}: pos_weight applies to {_kinds_reading('pos_weight')} tasks only"
            )
        if spec.check is not None:
            spec.check(self)
        return self

    @model_validator(mode="after")
    def _check_missing_labels(self) -> Task:
        where, strategy = f"task {self.name!r}", self.missing_labels
        if strategy != "ignore" and "missing_labels" not in self.spec.options:
            raise ValueError(
                f"{where}: missing_labels={strategy!r} applies to "
                f"{_kinds_reading('missing_labels')} tasks only, not {self.kind} (it fills "
                "the missing labels of rows with some label observed)"
            )
        if self.negative_weight is not None and strategy != "weak_negative":
            raise ValueError(f"{where}: negative_weight needs missing_labels='weak_negative'")
        epr = ("expected_positives", "expected_positive_weight")
        given = [f for f in epr if getattr(self, f) is not None]
        if given and strategy != "expected_positive":
            raise ValueError(f"{where}: {given[0]} needs missing_labels='expected_positive'")
        if strategy == "expected_positive" and self.expected_positives is None:
            raise ValueError(
                f"{where}: missing_labels='expected_positive' needs expected_positives, the "
                "mean number of positive labels per row (of the full labels, not the observed)"
            )
        check_partial_label_options(where, strategy, self.missing_label_options)
        if strategy == "asymmetric" and self.pos_weight is not None:
            raise ValueError(f"{where}: pos_weight does not apply to missing_labels='asymmetric'")
        k = len(self.labels) if self.labels is not None else self.n_outputs
        if k is not None and self.expected_positives is not None and self.expected_positives > k:
            raise ValueError(
                f"{where}: expected_positives={self.expected_positives} exceeds its {k} labels"
            )
        return self

    @property
    def spec(self) -> TaskKindSpec:
        """The registered spec of this task's kind."""
        return get_kind(self.kind)

    @property
    def is_classification(self) -> bool:
        """True for a kind of flag or class targets."""
        return self.spec.targets != "values"

    @property
    def missing_sentinel(self) -> float | None:
        """The raw value read as missing besides NaN / None / empty: ``sentinel``, else the
        kind's (-1 for class labels)."""
        return self.spec.sentinel if self.sentinel is None else self.sentinel

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the head's outputs; needs ``labels`` or ``n_outputs`` to be resolved."""
        spec = self.spec
        if spec.output_names is not None:
            return spec.output_names(self)
        return indexed_names(self, self.width)

    @property
    def width(self) -> int:
        """Number of head outputs (logits or values)."""
        return self.spec.width(self)

    @property
    def label_columns(self) -> int:
        """Columns of ``observed`` (and of raw labels): 1 for class labels, else ``width``."""
        return 1 if self.spec.targets == "classes" else self.width

    def thresholds(self) -> tuple[float, ...]:
        """One decision threshold per label (binary / multilabel)."""
        if isinstance(self.threshold, tuple):
            if len(self.threshold) != self.width:
                raise TaskmaskError(
                    f"task {self.name!r}: {len(self.threshold)} thresholds for {self.width} labels"
                )
            return self.threshold
        return (self.threshold,) * self.width


def check_unique_names(tasks: Sequence[Task]) -> None:
    """Raise if two tasks share a name or there are no tasks."""
    if not tasks:
        raise TaskmaskError("at least one task is needed")
    names = [task.name for task in tasks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TaskmaskError(f"task names must be unique; repeated: {duplicates}")
