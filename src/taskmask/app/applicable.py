"""The settings of a run config that apply to it: what a run directory's ``config.yaml`` shows.

A setting is left out where it has no effect and holds its default (``loss: mse`` on a binary
task, ``momentum`` without SGD, ``training.validation_split``, which a run config never uses)
or where it is unset or empty (``sentinel: null``, ``plugins: []``, no ``test`` file).
Left-out settings read back as their defaults, so the file loads to the same run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from taskmask.tasks._task import Task
from taskmask.training._trainer import TrainConfig

_CLASS_KINDS = ("binary", "multilabel")
_TASK_FIELDS: dict[str, tuple[str, ...] | None] = {  # the kinds a field applies to; None: any
    "loss": ("regression",),
    "huber_delta": ("regression",),
    "pos_weight": _CLASS_KINDS,
    "threshold": _CLASS_KINDS,
    "missing_labels": ("multilabel",),
    "negative_weight": None,
    "expected_positives": None,
    "expected_positive_weight": None,
    "missing_label_options": None,
    "labels": None,
    "n_outputs": None,
    "sentinel": None,
    "attach_to": None,
    "column": None,
    "columns": None,
    "generator": None,
}


def _default(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields[name]
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _task(raw: Mapping[str, Any]) -> dict[str, Any]:
    kind, out = raw.get("kind"), dict(raw)
    for name, kinds in _TASK_FIELDS.items():
        if name not in out:
            continue
        if out[name] is None or (kinds and kind not in kinds and out[name] == _default(Task, name)):
            del out[name]
    if out.get("loss", "huber") != "huber" and out.get("huber_delta") == 1.0:
        out.pop("huber_delta")
    if "generator" not in out and out.get("generator_options") == {}:
        out.pop("generator_options")
    return out


def _training(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    unused = ["validation_split", "checkpoint_dir"]
    unused += ["momentum"] if out.get("optimizer") != "sgd" else []
    unused += ["weighting_options"] if out.get("weighting") == "static" else []
    for name in unused:
        if name in out and out[name] == _default(TrainConfig, name):
            del out[name]
    return out


def _data(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in raw.items() if value is not None}
    if not out.get("stream"):
        out.pop("stream", None)
    if not out.get("validation_split"):
        out.pop("split_seed", None)  # no split, no seed of one
    return out


def applicable(dumped: Mapping[str, Any]) -> dict[str, Any]:
    """``dumped`` (a run config's ``model_dump(mode="json")``) less what does not apply."""
    out = dict(dumped)
    out["data"] = _data(dumped["data"])
    out["tasks"] = [_task(task) for task in dumped["tasks"]]
    out["training"] = _training(dumped["training"])
    if not out.get("plugins"):
        out.pop("plugins", None)
    if not any((out.get("trackers") or {}).values()):
        out.pop("trackers", None)
    return out
