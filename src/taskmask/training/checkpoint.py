"""Training checkpoints: what a run needs to continue after a crash as if it had never stopped.

A checkpoint directory holds two files, rewritten at the end of every epoch:

- ``checkpoint-EPOCH-TOKEN.safetensors``, the tensors: the model's state (``model.*``), the
  weighting's parameters and buffers (``weighting.*``), the optimiser's per-parameter state
  (``optimizer.PARAM.KEY``), the RNG states (``rng.shuffle``, the shuffling generator;
  ``rng.torch.RANK`` and ``rng.cuda.RANK``, each process's global generators) and the
  trainer's own tensors (``best.*``, the early-stopping best weights) and the history's
  float values (``history.values``, ``(epochs, columns)`` float64, and ``history.present``,
  whether each row has that column);
- ``checkpoint.json``, everything else: the format version, the epoch, the history's column
  names (``history_columns``, once, not once per epoch), the optimiser's hyper-parameters, the
  training config, and the tensor file's name and SHA-256.

The history travels as float64 tensors so that the JSON stays small at any number of tasks
(a few hundred bytes per column instead of one name per value per epoch) and resumes bit-exact.

Each file is written under a temporary name, synced, and renamed into place (`os.replace`),
tensors first: renaming ``checkpoint.json`` commits the checkpoint, so a crash at any moment
leaves the previous checkpoint or the new one, never a mix. Loading reads JSON and safetensors
only and never unpickles: a file that would need pickle (``torch.save``) is refused, and a
truncated or altered file is reported as such.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from taskmask._io import write_atomically
from taskmask._version import __version__
from taskmask._world import World
from taskmask.errors import TaskmaskError

FORMAT_VERSION = 1
INDEX_FILE = "checkpoint.json"
RESUMABLE_CHANGES = ("epochs", "progress", "log_every", "device", "checkpoint_dir")
"""The `taskmask.TrainConfig` fields that may differ between a run and its resumption."""


@dataclass
class Checkpoint:
    """Tensors by name, and the JSON-able rest (``meta``, which holds ``epoch``)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def exists(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a committed checkpoint."""
    return (Path(directory) / INDEX_FILE).is_file()


def _pack_history(checkpoint: Checkpoint) -> Checkpoint:
    """``meta["history"]`` (rows of floats) as ``history.*`` tensors and ``history_columns``."""
    rows = checkpoint.meta.get("history")
    if not isinstance(rows, list) or not all(
        isinstance(row, dict) and all(type(v) is float for v in row.values()) for row in rows
    ):
        return checkpoint  # not rows of floats: kept in the JSON as it is
    columns = list(dict.fromkeys(key for row in rows for key in row))
    values = torch.tensor(
        [[row.get(c, 0.0) for c in columns] for row in rows], dtype=torch.float64
    ).reshape(len(rows), len(columns))  # (epochs, columns)
    present = torch.tensor([[c in row for c in columns] for row in rows], dtype=torch.bool)
    tensors = {
        **checkpoint.tensors,
        "history.values": values,
        "history.present": present.reshape(values.shape),
    }
    meta = {k: v for k, v in checkpoint.meta.items() if k != "history"}
    return Checkpoint(tensors, {**meta, "history_columns": columns})


def _unpack_history(checkpoint: Checkpoint) -> Checkpoint:
    """The inverse of `_pack_history`: ``meta["history"]`` as the rows it was saved from."""
    columns = checkpoint.meta.get("history_columns")
    if columns is None:
        return checkpoint
    tensors = dict(checkpoint.tensors)
    values, present = tensors.pop("history.values"), tensors.pop("history.present")
    rows = [
        {c: v for c, v, p in zip(columns, vs, ps, strict=True) if p}
        for vs, ps in zip(values.tolist(), present.tolist(), strict=True)
    ]
    meta = {k: v for k, v in checkpoint.meta.items() if k != "history_columns"}
    return Checkpoint(tensors, {**meta, "history": rows})


def _storable(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy that shares no storage (safetensors refuses shared storage)."""
    out = torch.empty(tensor.shape, dtype=tensor.dtype)
    return out.copy_(tensor.detach())


def prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{key}": _storable(value) for key, value in state.items()}


def unprefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(optimizer: torch.optim.Optimizer) -> Checkpoint:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = _storable(value)
            else:
                other.setdefault(str(index), {})[key] = value
    return Checkpoint(tensors, {"param_groups": state["param_groups"], "state": other})


def _load_optimizer_state(optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in unprefixed("optimizer.", checkpoint.tensors).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    saved = checkpoint.meta["optimizer"]
    for index, values in saved["state"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def _rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def training_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    weighting: nn.Module,
    generator: torch.Generator,
    world: World,
) -> Checkpoint:
    """Everything but the trainer's own bookkeeping. Every rank must call it (the processes'
    RNG states are gathered); only rank 0 `save`s the result, so only rank 0's holds the model,
    weighting and optimiser tensors (the other ranks' is empty)."""
    gathered = {
        name: world.gather_rows(state.to(world.device)[None]).cpu()  # (world_size, n)
        for name, state in _rng_states(world.device).items()
    }
    if not world.is_main:
        return Checkpoint({}, {})
    optimizer_state = _optimizer_state(optimizer)
    tensors = {
        **prefixed("model.", model.state_dict()),
        **prefixed("weighting.", weighting.state_dict()),
        **optimizer_state.tensors,
        "rng.shuffle": generator.get_state(),
    }
    for name, rows in gathered.items():
        tensors.update({f"rng.{name}.{rank}": row.clone() for rank, row in enumerate(rows)})
    meta = {"optimizer": optimizer_state.meta, "world_size": world.world_size}
    return Checkpoint(tensors, meta)


def restore_training_state(
    checkpoint: Checkpoint,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    weighting: nn.Module,
    generator: torch.Generator,
    world: World,
    source: Path,
) -> None:
    """Load what `training_state` captured. A process without a saved RNG state of its own
    (resumed with more processes) takes rank 0's."""
    tensors = checkpoint.tensors
    try:
        model.load_state_dict(unprefixed("model.", tensors), strict=True)
        weighting.load_state_dict(unprefixed("weighting.", tensors), strict=True)
        _load_optimizer_state(optimizer, checkpoint)
        generator.set_state(tensors["rng.shuffle"])
        for name, state in _rng_states(world.device).items():
            saved = tensors.get(f"rng.{name}.{world.rank}", tensors.get(f"rng.{name}.0"))
            if saved is None or saved.shape != state.shape:
                continue  # e.g. saved on the CPU, resumed on CUDA: that generator stays seeded
            if name == "cuda":
                torch.cuda.set_rng_state(saved, world.device)
            else:
                torch.set_rng_state(saved)
    except (RuntimeError, ValueError, KeyError) as error:
        raise TaskmaskError(
            f"{source}: the checkpoint does not fit this model, weighting or optimizer:\n{error}"
        ) from None


def check_resumable(
    meta: Mapping[str, Any], config: Mapping[str, Any], n_samples: Mapping[str, int], source: Path
) -> None:
    """The run being resumed had the same settings (`RESUMABLE_CHANGES` aside) and data sizes."""
    saved = meta.get("config", {})
    changed = [
        f"{key}: {saved.get(key)!r} in the checkpoint, {value!r} now"
        for key, value in config.items()
        if key not in RESUMABLE_CHANGES and saved.get(key) != value
    ]
    changed += [
        f"{part} rows: {meta.get('n_samples', {}).get(part)} in the checkpoint, {n} now"
        for part, n in n_samples.items()
        if meta.get("n_samples", {}).get(part) != n
    ]
    if changed:
        raise TaskmaskError(
            f"{source}: the checkpoint is of a different run; only "
            f"{', '.join(RESUMABLE_CHANGES)} may change on resume:\n  " + "\n  ".join(changed)
        )


def sha256(path: Path) -> str:
    """The SHA-256 of file ``path``, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(directory: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` into ``directory`` (created if needed), atomically, replacing the
    previous one; returns the tensor file's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = _pack_history(checkpoint)
    name = f"checkpoint-{int(checkpoint.meta['epoch']):04d}-{secrets.token_hex(4)}.safetensors"
    tensor_path = directory / name
    write_atomically(tensor_path, lambda tmp: save_file(checkpoint.tensors, str(tmp)))
    index = {
        "format_version": FORMAT_VERSION,
        "taskmask_version": __version__,
        **checkpoint.meta,
        "tensor_file": name,
        "sha256": sha256(tensor_path),
    }
    text = json.dumps(index, indent=1) + "\n"
    write_atomically(directory / INDEX_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    for stale in directory.glob("checkpoint-*.safetensors"):
        if stale.name != name:
            stale.unlink(missing_ok=True)
    if os.name == "posix":  # make the renames themselves durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return tensor_path


def is_pickle(path: Path) -> bool:
    """Whether ``path`` is a ``torch.save`` file (a zip archive, or a bare pickle), by its first
    bytes; `TaskmaskError` if it cannot be read."""
    try:
        with open(path, "rb") as file:
            head = file.read(9)
    except FileNotFoundError:
        raise TaskmaskError(f"{path}: not found; the checkpoint is incomplete") from None
    except OSError as error:
        raise TaskmaskError(f"{path}: not readable ({error})") from None
    zipped = head.startswith(b"PK\x03\x04")
    pickled = head[:1] == b"\x80" and head[8:9] != b"{"  # safetensors: 8-byte length, then {
    return zipped or pickled


def refuse_pickle(path: Path) -> None:
    """A ``torch.save`` file is refused before any parsing."""
    if is_pickle(path):
        raise TaskmaskError(
            f"{path}: a pickle (torch.save) file; taskmask reads checkpoints from safetensors "
            "and JSON only and never unpickles, as unpickling can run arbitrary code"
        )


def _read_index(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TaskmaskError(f"{path.parent}: no checkpoint to resume from ({INDEX_FILE} not found)")
    refuse_pickle(path)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TaskmaskError(f"{path}: not readable JSON, truncated or corrupt ({error})") from None
    tensor_file = index.get("tensor_file") if isinstance(index, dict) else None
    if not (
        isinstance(tensor_file, str)
        and Path(tensor_file).name == tensor_file
        and isinstance(index.get("sha256"), str)
        and isinstance(index.get("epoch"), int)
    ):
        raise TaskmaskError(f"{path}: not a taskmask checkpoint index (fields missing or wrong)")
    if index.get("format_version") != FORMAT_VERSION:
        raise TaskmaskError(
            f"{path}: format version {index.get('format_version')!r}; "
            f"this taskmask reads {FORMAT_VERSION}"
        )
    return index


def load(directory: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint in ``directory``; `TaskmaskError` naming the file if it is missing,
    truncated, altered, or would need pickle."""
    directory = Path(directory)
    index = _read_index(directory / INDEX_FILE)
    tensor_path = directory / index["tensor_file"]
    refuse_pickle(tensor_path)
    if sha256(tensor_path) != index["sha256"]:
        raise TaskmaskError(
            f"{tensor_path}: its SHA-256 differs from the one in {INDEX_FILE}: the file is "
            "truncated or corrupt"
        )
    try:
        tensors = load_file(str(tensor_path))
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise TaskmaskError(f"{tensor_path}: not a readable safetensors file ({error})") from None
    packed = {"history.values", "history.present"} <= tensors.keys()
    columns = index.get("history_columns")
    width = len(columns) if isinstance(columns, list) else None
    if packed != (width is not None) or (
        packed and tuple(tensors["history.values"].shape[-1:]) != (width,)
    ):
        raise TaskmaskError(
            f"{directory / INDEX_FILE}: history_columns does not match the history tensors of "
            f"{tensor_path.name}"
        )
    return _unpack_history(Checkpoint(tensors, index))


def saved_epoch(directory: str | os.PathLike[str]) -> int:
    """The epoch of the checkpoint committed in ``directory``; 0 when there is none."""
    try:
        return int(_read_index(Path(directory) / INDEX_FILE)["epoch"])
    except TaskmaskError:
        return 0
