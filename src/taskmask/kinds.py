"""User-defined task kinds: a registry beside the four built-in ones.

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
  Default: `taskmask.masking.encode_numbers` (NaN / None / blank / ``task.sentinel`` missing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from taskmask.errors import TaskmaskError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from taskmask.losses import LossTerm
    from taskmask.masking import EncodedLabels
    from taskmask.metrics import MetricValue
    from taskmask.tasks import Task

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
