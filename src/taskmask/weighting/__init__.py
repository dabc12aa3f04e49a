"""Task weighting: how per-task losses are combined. Select by name with `make_weighting`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from taskmask.errors import TaskmaskError
from taskmask.tasks import Task
from taskmask.weighting._static import StaticWeighting
from taskmask.weighting._weighting import Weighting

__all__ = ["WEIGHTINGS", "StaticWeighting", "Weighting", "make_weighting"]

WEIGHTINGS: dict[str, Callable[..., Weighting]] = {
    "static": lambda tasks, **options: StaticWeighting([t.weight for t in tasks], **options),
}


def make_weighting(name: str, tasks: Sequence[Task], **options: Any) -> Weighting:
    """The weighting registered as ``name``, for ``tasks`` in model order."""
    if name not in WEIGHTINGS:
        raise TaskmaskError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}")
    return WEIGHTINGS[name](tasks, **options)
