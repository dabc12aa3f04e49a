"""Task weighting: how per-task losses are combined. Select by name with `make_weighting`.

Each method lives in its own private module and is imported only when selected, so optional
dependencies (torchjd, for the Jacobian aggregators) are needed only by those who use them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from taskmask.errors import TaskmaskError
from taskmask.tasks._task import Task
from taskmask.weighting._static import StaticWeighting
from taskmask.weighting._weighting import Weighting

__all__ = ["WEIGHTINGS", "StaticWeighting", "Weighting", "make_weighting"]


def _lazy(module: str, name: str, **fixed: Any) -> Callable[..., Weighting]:
    def build(tasks: Sequence[Task], **options: Any) -> Weighting:
        cls = getattr(import_module(f"taskmask.weighting.{module}"), name)
        return cls(len(tasks), **fixed, **options)

    return build


WEIGHTINGS: dict[str, Callable[..., Weighting]] = {
    "static": lambda tasks, **options: StaticWeighting([t.weight for t in tasks], **options),
    "uncertainty": _lazy("_uncertainty", "UncertaintyWeighting"),
    "dwa": _lazy("_dwa", "DynamicWeightAverage"),
    "gradnorm": _lazy("_gradnorm", "GradNormWeighting"),
    "famo": _lazy("_famo", "FastAdaptiveMultitaskWeighting"),
    "upgrad": _lazy("_jacobian", "JacobianAggregation", aggregator="upgrad"),
    "mgda": _lazy("_jacobian", "JacobianAggregation", aggregator="mgda"),
    "pcgrad": _lazy("_jacobian", "JacobianAggregation", aggregator="pcgrad"),
    "cagrad": _lazy("_jacobian", "JacobianAggregation", aggregator="cagrad"),
    "nash_mtl": _lazy("_jacobian", "JacobianAggregation", aggregator="nash_mtl"),
}


def make_weighting(name: str, tasks: Sequence[Task], **options: Any) -> Weighting:
    """The weighting registered as ``name``, for ``tasks`` in model order."""
    if name not in WEIGHTINGS:
        raise TaskmaskError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}")
    return WEIGHTINGS[name](tasks, **options)
