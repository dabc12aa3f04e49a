"""Computed features kept on disk, so that train, evaluate and predict compute them once.

An entry is a set of NumPy arrays in one ``.npz`` file (read with ``allow_pickle=False``: a
cache never unpickles) named by a key, the SHA-256 of everything the arrays depend on (the
input's content, the featuriser's settings and the versions of the libraries that compute
them; `content_key`). Entries are written atomically (`taskmask._io.write_atomically`), so a
reader sees a whole entry or none. An entry that cannot be read (truncated, bad CRC, arrays
missing or of the wrong kind) is logged as a warning and recomputed, never an error; a cache
folder that cannot be written is logged and skipped.

The folder is ``$TASKMASK_CACHE_DIR``, else ``$XDG_CACHE_HOME/taskmask``, else
``~/.cache/taskmask``; entries live in its ``features/`` subfolder and may be deleted at any
time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taskmask._io import write_atomically

CACHE_ENV = "TASKMASK_CACHE_DIR"
FORMAT = "taskmask-feature-cache-1"
"""Part of every key: a change of the entries' layout makes new keys."""

logger = logging.getLogger("taskmask")


def cache_dir() -> Path:
    """``$TASKMASK_CACHE_DIR``, else ``$XDG_CACHE_HOME/taskmask``, else ``~/.cache/taskmask``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "taskmask"


def content_key(*parts: str | bytes) -> str:
    """SHA-256 (hex) of `FORMAT` and ``parts``, each length-prefixed so that no two different
    lists of parts give one stream."""
    digest = hashlib.sha256()
    for part in (FORMAT, *parts):
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def entry_path(key: str) -> Path:
    """Where the entry ``key`` lives."""
    return cache_dir() / "features" / f"{key}.npz"


def load_entry(key: str, names: Sequence[str], *, what: str) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of entry ``key``, or None when there is no such entry or it cannot
    be read (then logged as a warning naming the file and ``what`` it held)."""
    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in names}
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        logger.warning("%s: unreadable cache entry of %s (%s); computing again", path, what, error)
        return None
    return arrays


def store_entry(key: str, arrays: Mapping[str, np.ndarray], *, what: str) -> None:
    """Write entry ``key`` atomically; a folder that cannot be written is logged, not fatal."""
    path = entry_path(key)

    def write(tmp: Path) -> None:
        stored: dict[str, Any] = {name: np.asarray(value) for name, value in arrays.items()}
        with open(tmp, "wb") as file:
            np.savez(file, allow_pickle=False, **stored)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, write)
    except OSError as error:
        logger.warning("%s: could not cache %s (%s); it will be computed again", path, what, error)


def discard_entry(key: str, *, what: str, reason: str) -> None:
    """Remove entry ``key`` (read but inconsistent), logging why; it is computed again."""
    path = entry_path(key)
    logger.warning("%s: bad cache entry of %s (%s); computing again", path, what, reason)
    path.unlink(missing_ok=True)
