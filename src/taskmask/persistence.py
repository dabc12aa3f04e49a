"""Save and load trained models: weights in safetensors, everything else in JSON.

A model directory holds ``model.safetensors`` and ``model.json`` (format version, taskmask
version, tasks with label names and thresholds, input shape, feature names, trunk config).
Loading never executes code from the files: a task of a user-defined kind (`taskmask.tasks`)
loads only when that kind is registered in the loading process. Writing is atomic: the
directory is written under a temporary name beside the target, then renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from taskmask._io import atomic_directory
from taskmask._version import __version__
from taskmask.errors import TaskmaskError
from taskmask.model._model import MultiTaskModel
from taskmask.model._trunks import TrunkConfig, build_trunk, trunk_config
from taskmask.tasks._task import Task, known_kinds

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


class ModelMeta(BaseModel):
    """What ``model.json`` holds."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    taskmask_version: str
    tasks: tuple[Task, ...]
    input_shape: tuple[int, ...]
    feature_names: tuple[str, ...] | None = None
    standardize: bool = True
    trunk: TrunkConfig | None = None


def write_model_files(model: MultiTaskModel, directory: Path) -> None:
    """Write ``model.safetensors`` and ``model.json`` into an existing directory."""
    meta = ModelMeta(
        format_version=FORMAT_VERSION,
        taskmask_version=__version__,
        tasks=tuple(t for t in model.tasks if not t.auxiliary),
        input_shape=model.input_shape,
        feature_names=model.feature_names,
        standardize=model.standardize,
        trunk=trunk_config(model.trunk),
    )
    auxiliary = {f"heads.{t.name}." for t in model.tasks if t.auxiliary}
    state = {
        key: value.detach().cpu().contiguous()
        for key, value in model.state_dict().items()
        if not any(key.startswith(prefix) for prefix in auxiliary)
    }
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / META_FILE).write_text(meta.model_dump_json(indent=2))


def save_model(model: MultiTaskModel, path: str | os.PathLike[str]) -> Path:
    """Save the inference model (auxiliary heads left out) to directory ``path``, atomically."""
    target = Path(path)
    atomic_directory(target, lambda tmp: write_model_files(model, tmp))
    return target


def _check_kinds(raw: Any, file: Path) -> None:
    """A clear error for a task whose kind is not registered in this process."""
    tasks = raw.get("tasks") if isinstance(raw, dict) else None
    for task in tasks if isinstance(tasks, list) else []:
        kind = task.get("kind") if isinstance(task, dict) else None
        if isinstance(kind, str) and kind not in known_kinds():
            raise TaskmaskError(
                f"{file}: task {task.get('name')!r} has kind {kind!r}, which is not registered "
                f"in this process; call taskmask.register_kind({kind!r}, ...) with its spec "
                f"before loading (known kinds: {list(known_kinds())})"
            )


def _read_meta(path: Path) -> ModelMeta:
    file = path / META_FILE
    try:
        raw: Any = json.loads(file.read_text())
    except FileNotFoundError:
        raise TaskmaskError(f"{file}: not found; is {path} a taskmask model directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TaskmaskError(f"{file}: not readable JSON ({error})") from None
    _check_kinds(raw, file)
    try:
        meta = ModelMeta.model_validate(raw)
    except ValidationError as error:
        raise TaskmaskError(f"{file}: not a valid taskmask model description:\n{error}") from None
    if meta.format_version != FORMAT_VERSION:
        raise TaskmaskError(
            f"{file}: format version {meta.format_version}; this taskmask reads {FORMAT_VERSION}"
        )
    return meta


def load_model(path: str | os.PathLike[str], *, trunk: nn.Module | None = None) -> MultiTaskModel:
    """Load a model saved by `save_model`. A model with a user-defined trunk needs that trunk
    (same architecture) passed as ``trunk``; its weights come from the file."""
    path = Path(path)
    meta = _read_meta(path)
    if trunk is None and meta.trunk is None:
        raise TaskmaskError(
            f"{path / META_FILE}: the model has a user-defined trunk; pass trunk=... to load it"
        )
    try:
        trunk = trunk or build_trunk(meta.trunk, meta.input_shape)  # type: ignore[arg-type]
        model = MultiTaskModel(
            trunk,
            meta.tasks,
            meta.input_shape,
            feature_names=meta.feature_names,
            standardize=meta.standardize,
        )
        for task in meta.tasks:
            task.thresholds()
    except ValueError as error:
        raise TaskmaskError(f"{path / META_FILE}: describes an impossible model: {error}") from None
    file = path / WEIGHTS_FILE
    try:
        state = load_file(str(file))
    except FileNotFoundError:
        raise TaskmaskError(f"{file}: not found") from None
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise TaskmaskError(f"{file}: not a readable safetensors file ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise TaskmaskError(f"{file}: weights do not fit the described model:\n{error}") from None
    model.eval()
    return model
