"""Images from a folder plus a label CSV, as ``(N, channels, height, width)`` float32 in [0, 1].

Every image is decoded with Pillow, converted to ``mode`` (``"RGB"``: 3 channels, ``"L"``: 1)
and resized to ``size = (height, width)``: ``fit="stretch"`` resizes the whole image (its
aspect ratio may change), ``fit="crop"`` first cuts the largest centred box of the target's
aspect ratio. A model keeps its ``input_shape``, so prediction reads images with
``size=model.input_shape[1:]``; per-channel standardisation (`taskmask.api.standardization`
with ``per="channel"``) is kept in the model's ``input_mean`` / ``input_scale`` buffers.
Archives are unpacked once into a cache folder with `extract_archive`. Every problem is a
`TaskmaskError` that names the file.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
import pandas as pd
import torch

from taskmask.data.tables import CSV_MISSING
from taskmask.errors import TaskmaskError

ImageMode = Literal["RGB", "L"]
_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar")
_MARKER = ".taskmask-extracted"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/taskmask``, or ``~/.cache/taskmask`` without that variable."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "taskmask"


def _archive_stamp(archive: Path) -> str:
    stat = archive.stat()
    return f"{archive.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}\n"


def _is_extracted(target: Path, stamp: str) -> bool:
    marker = target / _MARKER
    return marker.is_file() and marker.read_text() == stamp


def _within(root: Path, path: str | os.PathLike[str]) -> bool:
    resolved = Path(os.path.realpath(root / path))
    return resolved == root or root in resolved.parents


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    """Refuse what tarfile's ``"data"`` filter refuses; drop ownership and special mode bits."""
    name = member.name = member.name.lstrip("/" + os.sep)  # as the filter: "/a" is "a"
    if os.path.isabs(name) or not _within(root, name):
        raise tarfile.TarError(f"member {name!r} would be written outside the folder")
    if member.issym():
        target = Path(name).parent / member.linkname
        if os.path.isabs(member.linkname) or not _within(root, target):
            raise tarfile.TarError(f"link {name!r} points outside the folder")
    elif member.islnk():
        if os.path.isabs(member.linkname) or not _within(root, member.linkname):
            raise tarfile.TarError(f"link {name!r} points outside the folder")
    elif not (member.isfile() or member.isdir()):
        raise tarfile.TarError(f"member {name!r} is a device or pipe, not a file")
    member.mode &= 0o755  # no set-uid, set-gid or sticky bits, nor group / other write
    if hasattr(os, "getuid"):  # when run as root, tarfile would give files the archive's owner
        member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""


def safe_extractall(tar: tarfile.TarFile, destination: Path) -> None:
    """Extract every member of ``tar`` under ``destination``, with tarfile's ``"data"`` filter
    where tarfile has one (Python >= 3.11.4); before that, each member is checked as that
    filter would (leading slashes dropped; `tarfile.TarError` for paths or links that leave the
    folder, absolute links, devices) before anything is written."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(destination, filter="data")
        return
    root = Path(os.path.realpath(destination))
    members = tar.getmembers()
    for member in members:
        _check_member(member, root)
    tar.extractall(destination, members=members)


def extract_archive(
    archive: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Unpack a tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ...) into ``cache_dir / <its name
    without the suffix>`` once, and return that folder.

    Later calls return the folder without reading the archive while the archive's path, size
    and modification time are unchanged. The archive is unpacked into a temporary folder that is
    then renamed into place, so an interrupted run leaves nothing half-done; members are
    extracted as `safe_extractall` says (nothing written or linked outside the folder).
    ``cache_dir`` defaults to `default_cache_dir`; keep it outside any repository.
    """
    archive = Path(archive)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not archive.is_file():
        raise TaskmaskError(f"{archive}: archive not found")
    name = archive.name
    stem = next((name[: -len(s)] for s in _ARCHIVE_SUFFIXES if name.endswith(s)), archive.stem)
    target = cache / stem
    stamp = _archive_stamp(archive)
    if _is_extracted(target, stamp):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=cache))
    try:
        with tarfile.open(archive) as tar:
            safe_extractall(tar, tmp)
        (tmp / _MARKER).write_text(stamp)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        detail = " ".join(str(error).split()) or type(error).__name__
        raise TaskmaskError(f"{archive}: not an extractable tar archive ({detail})") from None
    try:
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError:
        if not _is_extracted(target, stamp):  # not merely beaten to it by another process
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pillow() -> ModuleType:
    try:
        from PIL import Image
    except ImportError:
        raise TaskmaskError("reading images needs Pillow: pip install pillow") from None
    return Image


def _load_image(path: Path, size: tuple[int, int], mode: ImageMode, fit: str) -> np.ndarray:
    """One image as uint8 ``(channels, height, width)``."""
    image_module = _pillow()
    height, width = size
    try:
        with image_module.open(path) as image:
            image.draft(mode, (width, height))  # JPEG: decode at a reduced scale, still >= size
            image = image.convert(mode)
            if fit == "crop":
                from PIL import ImageOps

                image = ImageOps.fit(image, (width, height), image_module.Resampling.BILINEAR)
            else:
                image = image.resize((width, height), image_module.Resampling.BILINEAR)
            pixels = np.asarray(image)
    except (OSError, SyntaxError, ValueError, image_module.DecompressionBombError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise TaskmaskError(f"{path}: not a readable image ({detail})") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _read_labels(labels_csv: Path, file_column: str | None) -> tuple[pd.DataFrame, str]:
    if not labels_csv.is_file():
        raise TaskmaskError(f"{labels_csv}: label file not found")
    try:
        frame = pd.read_csv(labels_csv, keep_default_na=False, na_values=list(CSV_MISSING))
    except (OSError, ValueError) as error:
        detail = " ".join(str(error).split())
        raise TaskmaskError(f"{labels_csv}: not a readable CSV file ({detail})") from None
    if frame.empty:
        raise TaskmaskError(f"{labels_csv}: no rows")
    column = str(frame.columns[0]) if file_column is None else file_column
    if column not in frame.columns:
        raise TaskmaskError(
            f"{labels_csv}: no column {column!r} (file_column); the file has columns "
            f"{[str(c) for c in frame.columns]}"
        )
    return frame, column


def read_image_folder(
    folder: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str],
    *,
    size: Sequence[int] = (64, 64),
    file_column: str | None = None,
    mode: ImageMode = "RGB",
    fit: Literal["stretch", "crop"] = "stretch",
) -> tuple[torch.Tensor, pd.DataFrame]:
    """The images that ``labels_csv`` lists, and their labels.

    ``file_column`` (default: the CSV's first column) holds each image's path relative to
    ``folder``. Returns ``inputs`` ``(N, C, height, width)`` float32 in [0, 1] (C = 3 for
    ``"RGB"``, 1 for ``"L"``) in the CSV's row order, and the CSV's other columns as they are
    (an empty cell or ``NaN`` is missing), indexed by the file column. Missing or unreadable
    images are a `TaskmaskError` naming the file.
    """
    folder, labels_csv = Path(folder), Path(labels_csv)
    if len(size) != 2 or any(int(s) < 1 for s in size):
        raise TaskmaskError(f"size must be (height, width) with both >= 1, got {tuple(size)}")
    if mode not in ("RGB", "L"):
        raise TaskmaskError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if fit not in ("stretch", "crop"):
        raise TaskmaskError(f"fit must be 'stretch' or 'crop', got {fit!r}")
    height, width = int(size[0]), int(size[1])
    frame, column = _read_labels(labels_csv, file_column)
    names = frame[column].astype(str).tolist()
    paths = [folder / name for name in names]
    absent = [path for path in paths if not path.is_file()]
    if absent:
        raise TaskmaskError(
            f"{absent[0]}: image not found ({len(absent)} of the {len(paths)} files that "
            f"{labels_csv} lists are missing from {folder})"
        )
    channels = 3 if mode == "RGB" else 1
    pixels = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    for row, path in enumerate(paths):
        pixels[row] = _load_image(path, (height, width), mode, fit)
    inputs = torch.from_numpy(pixels).float().div_(255.0)
    labels = frame.drop(columns=[column]).set_axis(pd.Index(names, name=column), axis=0)
    return inputs, labels
