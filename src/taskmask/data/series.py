"""Multichannel time series as ``(N, channels, length)`` float32, the layout of `CNN1DConfig`.

Series come from an NPZ array (`read_series_npz`) or from a folder with one text file per
recording (`read_series_folder`): one line per time step, one column per channel (``x y z``).
Recordings of different lengths are brought to one ``length``: a longer one is cropped (its
first ``length`` samples by default, ``crop="center"`` for the middle ones), a shorter one is
padded at its end with ``pad_value`` (0 by default); the original length is reported, so short
recordings can be dropped or flagged. `taskmask.api.standardization(x, per="channel")` gives
per-channel statistics for the model's ``input_mean`` / ``input_scale``.
Every problem is a `TaskmaskError` that names the file.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from taskmask.data.tables import read_table
from taskmask.errors import TaskmaskError

Crop = Literal["start", "center"]

HMP_NAME_PATTERN = (
    r"Accelerometer-(?P<time>\d{4}(?:-\d{2}){5})-(?P<activity>[a-z_]+)"
    r"-(?P<volunteer>(?P<gender>[fm])\d+)"
)
"""File names of the HMP ADL data set (``Accelerometer-2011-04-11-13-28-18-brush_teeth-f1``):
recording time, activity, volunteer and the volunteer's gender (``f`` / ``m``)."""


def fit_length(
    series: np.ndarray, length: int, *, crop: Crop = "start", pad_value: float = 0.0
) -> np.ndarray:
    """``series`` ``(..., T)`` cropped or padded at the end to ``(..., length)`` (see above)."""
    if length < 1:
        raise TaskmaskError(f"length must be >= 1, got {length}")
    if crop not in ("start", "center"):
        raise TaskmaskError(f"crop must be 'start' or 'center', got {crop!r}")
    total = series.shape[-1]
    if total >= length:
        start = (total - length) // 2 if crop == "center" else 0
        return series[..., start : start + length]
    padding = [(0, 0)] * (series.ndim - 1) + [(0, length - total)]
    return np.pad(series, padding, constant_values=pad_value)


def _read_recording(path: Path, delimiter: str | None) -> np.ndarray:
    """One text file as float32 ``(channels, T)``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TaskmaskError(f"{path}: not a readable text file ({error})") from None
    if not text.strip():
        raise TaskmaskError(f"{path}: no samples (the file is empty)")
    try:
        values = np.loadtxt(io.StringIO(text), dtype=np.float64, delimiter=delimiter, ndmin=2)
    except ValueError as error:
        detail = " ".join(str(error).split())
        raise TaskmaskError(f"{path}: not one row of numbers per time step ({detail})") from None
    finite = np.isfinite(values)
    if not finite.all():
        step, channel = np.argwhere(~finite)[0]
        raise TaskmaskError(f"{path}: NaN or infinite value at time step {step}, channel {channel}")
    return values.T.astype(np.float32)


def _fields(path: Path, name_pattern: str | None) -> dict[str, str]:
    if name_pattern is None:
        return {}
    match = re.fullmatch(name_pattern, path.stem)
    if match is None:
        raise TaskmaskError(f"{path}: the file name does not match name_pattern {name_pattern!r}")
    return {key: value or "" for key, value in match.groupdict().items()}


def read_series_folder(
    folder: str | os.PathLike[str],
    *,
    pattern: str = "*.txt",
    length: int | None = None,
    crop: Crop = "start",
    pad_value: float = 0.0,
    delimiter: str | None = None,
    name_pattern: str | None = None,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Every file under ``folder`` that the glob ``pattern`` matches, as one recording each.

    Columns split on whitespace (or on ``delimiter``); lines starting with ``#`` are comments.
    Without ``length`` all recordings must have the same length. Returns ``inputs``
    ``(N, channels, length)`` float32, in sorted path order, and a frame with one row each:
    ``file`` (path relative to ``folder``), ``folder`` (its parent folder relative to
    ``folder``, ``""`` at the top; the class in a folder-per-class layout), ``length`` (samples
    before cropping or padding) and the named groups of ``name_pattern``, a regular expression
    that must match each file's name without its suffix (e.g. `HMP_NAME_PATTERN`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskmaskError(f"{folder}: folder not found")
    paths = sorted(path for path in folder.glob(pattern) if path.is_file())
    if not paths:
        raise TaskmaskError(f"{folder}: no files match {pattern!r}")
    recordings = [_read_recording(path, delimiter) for path in paths]
    first = recordings[0].shape[0]
    for path, recording in zip(paths, recordings, strict=True):
        if recording.shape[0] != first:
            raise TaskmaskError(
                f"{path}: {recording.shape[0]} channels, but {paths[0]} has {first}"
            )
    lengths = [recording.shape[1] for recording in recordings]
    if length is None and len(set(lengths)) > 1:
        shortest = int(np.argmin(lengths))
        raise TaskmaskError(
            f"{folder}: recordings have lengths {min(lengths)} to {max(lengths)} "
            f"({paths[shortest]} has {lengths[shortest]}); pass length=... to crop or pad them"
        )
    length = lengths[0] if length is None else length
    inputs = np.stack([fit_length(r, length, crop=crop, pad_value=pad_value) for r in recordings])
    rows = []
    for path, total in zip(paths, lengths, strict=True):
        parent = path.parent.relative_to(folder).as_posix()
        rows.append(
            {
                "file": path.relative_to(folder).as_posix(),
                "folder": "" if parent == "." else parent,
                "length": total,
                **_fields(path, name_pattern),
            }
        )
    return torch.from_numpy(inputs), pd.DataFrame(rows)


def read_series_npz(
    path: str | os.PathLike[str],
    key: str,
    *,
    channels_last: bool = False,
    length: int | None = None,
    crop: Crop = "start",
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Array ``key`` of an NPZ file as float32 ``(N, channels, length)``.

    The array is ``(N, channels, T)``, ``(N, T, channels)`` with ``channels_last``, or
    ``(N, T)`` for one channel; ``length`` crops or pads ``T`` as `fit_length` does.
    """
    table = read_table(Path(path))
    if not table.is_npz:
        raise TaskmaskError(f"{table.path}: expected an NPZ file for series")
    values = table.column(key, what="series")
    if values.dtype.kind not in "biuf":
        raise TaskmaskError(f"{table.path}: array {key!r} is not numeric (dtype {values.dtype})")
    if values.ndim == 2:
        values = values[:, None, :]
    elif values.ndim == 3 and channels_last:
        values = values.transpose(0, 2, 1)
    elif values.ndim != 3:
        raise TaskmaskError(
            f"{table.path}: array {key!r} has shape {values.shape}; expected (N, channels, T), "
            "(N, T, channels) with channels_last=True, or (N, T)"
        )
    if len(values) == 0 or values.shape[2] == 0:
        raise TaskmaskError(f"{table.path}: array {key!r} is empty (shape {values.shape})")
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise TaskmaskError(f"{table.path}: array {key!r} is NaN or infinite in series {row}")
    if length is not None:
        values = fit_length(values, length, crop=crop, pad_value=pad_value)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
