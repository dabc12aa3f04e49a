"""Changing the kind registry of `taskmask.tasks._task`: `register_kind` (a kind's name is a
non-empty string without '.'; one direction per summary metric across kinds), `unregister_kind`
(a built-in kind stays), and `metric_direction`, what the registered kinds say of a metric."""

from __future__ import annotations

from taskmask.errors import TaskmaskError
from taskmask.tasks._task import _BUILTINS, _REGISTRY, TaskKindSpec


def _base(metric: str) -> str:
    return metric.removesuffix("_macro")


def _check_direction(name: str, spec: TaskKindSpec) -> None:
    for other, known in _REGISTRY.items():
        same = other != name and _base(known.summary) == _base(spec.summary)
        if same and known.higher_is_better != spec.higher_is_better:
            raise TaskmaskError(
                f"kind {name!r}: metric {spec.summary!r} is already the summary of kind "
                f"{other!r} with the opposite direction (higher_is_better="
                f"{known.higher_is_better}); name it differently"
            )


def register_kind(name: str, spec: TaskKindSpec, *, replace: bool = False) -> None:
    """Make ``name`` a task kind in this process; ``replace=True`` replaces a registered one,
    a built-in one too (the kind's tasks then follow the new spec everywhere)."""
    if not isinstance(name, str) or not name or "." in name or name != name.strip():
        raise TaskmaskError(f"a kind name is a non-empty string without '.', got {name!r}")
    if not isinstance(spec, TaskKindSpec):
        raise TaskmaskError(f"kind {name!r}: expected a TaskKindSpec, got {type(spec).__name__}")
    if not spec.summary:
        raise TaskmaskError(f"kind {name!r}: summary must name one of its metrics")
    if name in _REGISTRY and not replace:
        what = "a built-in kind" if name in _BUILTINS else "already registered"
        raise TaskmaskError(f"kind {name!r} is {what}; pass replace=True to replace it")
    _check_direction(name, spec)
    _REGISTRY[name] = spec


def mark_builtin(name: str) -> None:
    """Protect a registered kind of `taskmask.tasks.kinds` from `unregister_kind`."""
    _BUILTINS.add(name)


def unregister_kind(name: str) -> None:
    """Forget a registered kind (tasks of that kind stop validating); a built-in stays."""
    if name in _BUILTINS:
        raise TaskmaskError(
            f"kind {name!r} is a built-in kind and cannot be unregistered; "
            "register_kind(name, spec, replace=True) replaces it"
        )
    if name not in _REGISTRY:
        raise TaskmaskError(f"kind {name!r} is not registered; registered: {sorted(_REGISTRY)}")
    del _REGISTRY[name]


def metric_direction(metric: str) -> bool | None:
    """Whether higher is better for ``metric`` (no ``_macro``), as a registered kind declares
    it (its summary or ``lower_is_better``); None when no kind declares it."""
    for spec in _REGISTRY.values():
        if _base(spec.summary) == metric:
            return spec.higher_is_better
        if metric in spec.lower_is_better:
            return False
    return None
