"""Save and load trained models: weights in safetensors, everything else in JSON.

A model directory holds ``model.safetensors`` and ``model.json`` (format version, taskmask
version, tasks with label names and thresholds, input shape, feature names, trunk config, and
``weights_sha256``, the SHA-256 of ``model.safetensors``). Loading never executes code from the
files (a pickle is refused, named as such): a task of a user-defined kind (`taskmask.tasks`)
loads only when that kind is registered in the loading process. It checks, before allocating
anything the size of the model, the weights' checksum and every tensor's shape in the
safetensors header against the model ``model.json`` describes. Writing is atomic: the
directory is written under a temporary name beside the target, then renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from taskmask._io import atomic_directory
from taskmask._version import __version__
from taskmask.errors import TaskmaskError
from taskmask.model._heads import head_key
from taskmask.model._model import MultiTaskModel
from taskmask.model._trunks import TrunkConfig, build_trunk, trunk_config
from taskmask.tasks._task import Task, known_kinds
from taskmask.training.checkpoint import is_pickle, sha256

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
    weights_sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")


def write_model_files(model: MultiTaskModel, directory: Path) -> None:
    """Write ``model.safetensors`` and ``model.json`` (with its SHA-256) into an existing
    directory."""
    auxiliary = {f"heads.{head_key(t.name)}." for t in model.tasks if t.auxiliary}
    state = {
        key: value.detach().cpu().contiguous()
        for key, value in model.state_dict().items()
        if not any(key.startswith(prefix) for prefix in auxiliary)
    }
    save_file(state, str(directory / WEIGHTS_FILE))
    meta = ModelMeta(
        format_version=FORMAT_VERSION,
        taskmask_version=__version__,
        tasks=tuple(t for t in model.tasks if not t.auxiliary),
        input_shape=model.input_shape,
        feature_names=model.feature_names,
        standardize=model.standardize,
        trunk=trunk_config(model.trunk),
        weights_sha256=sha256(directory / WEIGHTS_FILE),
    )
    (directory / META_FILE).write_text(meta.model_dump_json(indent=2))


def save_model(model: MultiTaskModel, path: str | os.PathLike[str]) -> Path:
    """Save the inference model (auxiliary heads left out) to directory ``path``, atomically.
    ``path`` may be new, an empty directory or a model directory (which it replaces); a file or
    any other directory is a `TaskmaskError`, and is left as it was."""
    target = Path(path)
    if target.is_dir() and any(target.iterdir()) and not (target / META_FILE).is_file():
        raise TaskmaskError(
            f"{target}: a directory that holds no {META_FILE}; save_model replaces a model "
            "directory or an empty one, never other files"
        )
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


def load_model(
    path: str | os.PathLike[str], *, trunk: nn.Module | None = None, verify: bool = True
) -> MultiTaskModel:
    """Load a model saved by `save_model`. A model with a user-defined trunk needs that trunk
    (same architecture) passed as ``trunk``; its weights come from the file.

    ``verify``: check ``model.safetensors`` against the SHA-256 in ``model.json``; pass
    ``verify=False`` for weights changed on purpose. A model saved without a checksum (taskmask
    0.1.0) is not verified. Tensor shapes are checked in either case."""
    path = Path(path)
    meta = _read_meta(path)
    if trunk is None and meta.trunk is None:
        raise TaskmaskError(
            f"{path / META_FILE}: the model has a user-defined trunk; pass trunk=... to load it"
        )
    file = path / WEIGHTS_FILE
    _check_weights_file(file)
    shapes = _header_shapes(file)
    if verify and meta.weights_sha256 is not None and sha256(file) != meta.weights_sha256:
        raise TaskmaskError(
            f"{file}: its SHA-256 differs from weights_sha256 in {META_FILE}: the file is "
            "corrupt or was changed; pass verify=False (CLI: --no-verify) to load weights "
            "changed on purpose"
        )
    if trunk is None:
        with torch.device("meta"):  # shapes only: nothing the size of the model is allocated
            _check_shapes(file, shapes, _build(path, meta, None))
    model = _build(path, meta, trunk)
    _check_shapes(file, shapes, model)
    try:
        state = load_file(str(file))
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise TaskmaskError(f"{file}: not a readable safetensors file ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise TaskmaskError(f"{file}: weights do not fit the described model:\n{error}") from None
    model.eval()
    return model


def _build(path: Path, meta: ModelMeta, trunk: nn.Module | None) -> MultiTaskModel:
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
    return model


PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


def _check_weights_file(file: Path) -> None:
    """The weights file exists and is no pickle (named as such: taskmask never loads one)."""
    if not file.is_file():
        pickles = sorted(p.name for p in file.parent.glob("*") if p.suffix in PICKLE_SUFFIXES)
        names = ", ".join(pickles)
        hint = f"; {names} may be a pickle (torch.save), which taskmask never loads"
        raise TaskmaskError(f"{file}: not found{hint if pickles else ''}")
    if is_pickle(file):
        raise TaskmaskError(
            f"{file}: not a readable safetensors file: it is a pickle (torch.save), which "
            "taskmask never loads, as unpickling can run arbitrary code"
        )


def _header_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape, read from the safetensors header alone."""
    try:
        with safe_open(str(file), framework="pt") as weights:
            return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise TaskmaskError(f"{file}: not a readable safetensors file ({error})") from None


def _check_shapes(file: Path, shapes: dict[str, tuple[int, ...]], model: MultiTaskModel) -> None:
    """Every tensor the model expects is in the file with its shape, and no other."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key, shape in expected.items():
        if key in shapes and shapes[key] != shape:
            raise TaskmaskError(
                f"{file}: tensor {key!r} has shape {shapes[key]}; the model {META_FILE} "
                f"describes needs {shape}"
            )
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise TaskmaskError(
            f"{file}: its tensors do not match the model {META_FILE} describes "
            f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})"
        )
