"""Task specifications: what each head predicts, how its labels look, how its loss is formed.

A `Task` is plain, validated data (pydantic): it is written to the model's JSON and read back
without executing anything. Kinds:

- ``binary``: one logit; targets 0/1.
- ``multilabel``: k logits, one per named label; targets 0/1 per label.
- ``multiclass``: k-way softmax over named classes; targets as names or indices.
- ``regression``: 1..k real outputs (e.g. key-point coordinates), each may be missing alone.

A kind registered with `taskmask.register_kind` (see `taskmask.tasks`) is accepted too; only
NaN / None / empty (and ``sentinel`` when given) mark its labels missing.

Task kinds:

A `TaskKindSpec` says what a kind's head outputs, how its raw labels become
``EncodedLabels(target, observed)``, its masked loss, its metrics and, optionally, its head
module and how a prediction is decided. ``register_kind(name, spec)`` makes ``name`` usable as
``Task(kind=name)`` in this process. The built-in kinds (binary, multilabel, multiclass,
regression) are not in the registry and cannot be replaced.

A saved model stores only the kind's name: `taskmask.load_model` rebuilds such a task from the
spec registered in the loading process (an unregistered kind is an error naming it); nothing is
ever executed from the files.

Contract of a spec's functions (a missing label means ``observed == False``):

- ``loss(input, target, observed) -> LossTerm(sum, count)``: the sum of the elementwise loss
  over observed entries and how many there were. A missing entry must add nothing and get
  exactly zero gradient whatever its target holds; with nothing observed the sum is an exact,
  graph-connected 0. Select with ``torch.where``, never multiply a loss that may be NaN.
- ``metrics(preds, target, observed) -> {name: float | Undefined}``: numpy arrays (``preds`` is
  the head's output in float64); only observed entries may count.
- ``encode(task, raw, where) -> EncodedLabels``: ``target`` and a bool ``observed`` of the
  same shape, one row per raw row; ``where`` names the data and task for error messages.
  Default: `taskmask.tasks.encode_numbers` (NaN / None / blank / ``task.sentinel`` missing).
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

BUILTIN_KINDS = ("binary", "multilabel", "multiclass", "regression")


def declared_width(task: Task) -> int:
    """The number of ``labels``, else ``n_outputs``, else 1."""
    if task.labels is not None:
        return len(task.labels)
    return task.n_outputs or 1


@dataclass(frozen=True)
class TaskKindSpec:
    """What a user-defined task kind needs (see the module docstring for the contracts).

    ``summary`` is the metric key that sums a task up (it must be among the keys ``metrics``
    returns); ``higher_is_better`` is its direction (early stopping's ``mode="auto"`` reads it).
    ``width(task)`` is the head's number of outputs (default `declared_width`). ``head(task,
    in_features)`` builds the head module (default ``nn.Linear(in_features, width)``).
    ``decide(preds)`` turns the head's outputs ``(N, width)`` into decisions for
    `taskmask.predict` (default: none).
    """

    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossTerm]
    metrics: Callable[[np.ndarray, np.ndarray, np.ndarray], Mapping[str, MetricValue]]
    summary: str
    higher_is_better: bool = True
    width: Callable[[Task], int] = declared_width
    encode: Callable[[Task, Any, str], EncodedLabels] | None = None
    head: Callable[[Task, int], nn.Module] | None = None
    decide: Callable[[np.ndarray], np.ndarray] | None = None


_REGISTRY: dict[str, TaskKindSpec] = {}


def register_kind(name: str, spec: TaskKindSpec, *, replace: bool = False) -> None:
    """Make ``name`` a task kind in this process; ``replace=True`` replaces a registered one."""
    if not isinstance(name, str) or not name or "." in name or name != name.strip():
        raise TaskmaskError(f"a kind name is a non-empty string without '.', got {name!r}")
    if name in BUILTIN_KINDS:
        raise TaskmaskError(f"{name!r} is a built-in kind and cannot be registered")
    if not isinstance(spec, TaskKindSpec):
        raise TaskmaskError(f"kind {name!r}: expected a TaskKindSpec, got {type(spec).__name__}")
    if not spec.summary:
        raise TaskmaskError(f"kind {name!r}: summary must name one of its metrics")
    if name in _REGISTRY and not replace:
        raise TaskmaskError(f"kind {name!r} is already registered; pass replace=True")
    for other, known in _REGISTRY.items():
        same = other != name and known.summary == spec.summary
        if same and known.higher_is_better != spec.higher_is_better:
            raise TaskmaskError(
                f"kind {name!r}: metric {spec.summary!r} is already the summary of kind "
                f"{other!r} with the opposite direction (higher_is_better="
                f"{known.higher_is_better}); name it differently"
            )
    _REGISTRY[name] = spec


def unregister_kind(name: str) -> None:
    """Forget a registered kind (tasks of that kind stop validating)."""
    if name not in _REGISTRY:
        raise TaskmaskError(f"kind {name!r} is not registered; registered: {sorted(_REGISTRY)}")
    del _REGISTRY[name]


def is_custom(kind: str) -> bool:
    """True for a registered user-defined kind."""
    return kind in _REGISTRY


def known_kinds() -> tuple[str, ...]:
    """The built-in kinds, then the registered ones in name order."""
    return (*BUILTIN_KINDS, *sorted(_REGISTRY))


def get_kind(name: str) -> TaskKindSpec:
    """The spec of a registered kind; `TaskmaskError` naming the known kinds otherwise."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise TaskmaskError(
            f"kind {name!r} is not registered in this process; known kinds: "
            f"{list(known_kinds())} (register it with taskmask.register_kind)"
        )
    return spec


def summary_direction(metric: str) -> bool | None:
    """``higher_is_better`` of the registered kind whose summary is ``metric``, else None."""
    for spec in _REGISTRY.values():
        if spec.summary == metric:
            return spec.higher_is_better
    return None


def make_head(task: Task, in_features: int) -> nn.Module:
    """The head of ``task``: its kind's ``head`` if it has one, else a linear layer."""
    spec = _REGISTRY.get(task.kind)
    if spec is None or spec.head is None:
        return nn.Linear(in_features, task.width)
    return spec.head(task, in_features)


TaskKind = Literal["binary", "multilabel", "multiclass", "regression"]
RegressionLoss = Literal["mse", "l1", "huber"]
MissingLabels = Literal["ignore", "negative", "weak_negative", "expected_positive"]


class Task(BaseModel):
    """One task of a multi-task model.

    ``labels`` names the outputs: the labels of a multilabel task, the classes of a multiclass
    task, the output names of a regression task (default ``name`` or ``name_0..``). ``weight`` is
    the task's static loss weight (Keras ``loss_weights`` semantics). ``sentinel`` is the raw
    value that means "missing" besides NaN / None / empty (default -1 for class labels, as in
    seed 000; none for regression). ``pos_weight`` (binary / multilabel) is one number, one per
    label, or ``"balanced"`` (negatives / positives per label, counted on observed training
    labels). ``attach_to`` names a trunk submodule whose output feeds this head (default: the
    trunk's output). ``auxiliary`` tasks regularise training only.

    ``missing_labels`` (multilabel only; ``docs/partial_labels.md``) treats a missing label of a
    row that has some observed label of the task as: ``ignore`` (default), ``negative``,
    ``weak_negative`` (a negative of weight ``negative_weight``, default ``1 / (k - 1)``), or
    ``expected_positive`` (no loss, plus ``expected_positive_weight`` (default ``k``) times the
    squared gap to ``expected_positives`` per row, which is required); Cole et al. 2021.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: str  # a TaskKind, or a kind registered with taskmask.register_kind
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
        if kind in BUILTIN_KINDS or is_custom(kind):
            return kind
        raise ValueError(
            f"task {info.data.get('name')!r}: unknown kind {kind!r}; known kinds: "
            f"{list(known_kinds())} (register a user-defined kind with taskmask.register_kind)"
        )

    @model_validator(mode="after")
    def _check(self) -> Task:
        where = f"task {self.name!r}"
        if "." in self.name:
            raise ValueError(f"{where}: task names may not contain '.'")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{where}: label names must be unique, got {list(self.labels)}")
        if self.kind == "binary" and self.labels is not None and len(self.labels) != 1:
            raise ValueError(f"{where}: a binary task has exactly one label name")
        if self.kind == "multiclass" and self.labels is not None and len(self.labels) < 2:
            raise ValueError(f"{where}: a multiclass task needs at least 2 classes")
        if self.labels and self.n_outputs and len(self.labels) != self.n_outputs:
            raise ValueError(
                f"{where}: {len(self.labels)} label names but n_outputs={self.n_outputs}"
            )
        if self.pos_weight is not None and self.kind not in ("binary", "multilabel"):
            raise ValueError(f"{where}: pos_weight applies to binary and multilabel tasks only")
        return self

    @model_validator(mode="after")
    def _check_missing_labels(self) -> Task:
        where, strategy = f"task {self.name!r}", self.missing_labels
        if strategy != "ignore" and self.kind != "multilabel":
            raise ValueError(
                f"{where}: missing_labels={strategy!r} applies to multilabel tasks only, not "
                f"{self.kind} (it fills the missing labels of rows with some label observed)"
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
        k = len(self.labels) if self.labels is not None else self.n_outputs
        if k is not None and self.expected_positives is not None and self.expected_positives > k:
            raise ValueError(
                f"{where}: expected_positives={self.expected_positives} exceeds its {k} labels"
            )
        return self

    @property
    def is_classification(self) -> bool:
        return self.kind != "regression"

    @property
    def missing_sentinel(self) -> float | None:
        """The raw value read as missing besides NaN / None / empty: -1 for classes by default."""
        if self.sentinel is not None:
            return self.sentinel
        return -1.0 if self.kind in ("binary", "multilabel", "multiclass") else None

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the head's outputs; needs ``labels`` or ``n_outputs`` to be resolved."""
        if self.labels is not None:
            return self.labels
        n = self.n_outputs
        if is_custom(self.kind):
            n = self.width
            return (self.name,) if n == 1 else tuple(f"{self.name}_{i}" for i in range(n))
        if self.kind == "binary" or (self.kind == "regression" and n in (None, 1)):
            return (self.name,)
        if n is None:
            raise TaskmaskError(f"task {self.name!r}: labels are not known yet (fit first)")
        return tuple(f"{self.name}_{i}" for i in range(n))

    @property
    def width(self) -> int:
        """Number of head outputs (logits or values)."""
        if is_custom(self.kind):
            return get_kind(self.kind).width(self)
        return 1 if self.kind == "binary" else len(self.output_names)

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
