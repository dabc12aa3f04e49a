"""Atomic writes: a reader sees the old file (or directory) or the whole new one, never a part."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    """The process's umask (reading it means setting it: put straight back)."""
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, sync it to disk, then rename it to
    ``path``: readers see the old file or the whole new one, never a part. The file gets the
    permissions of any new file (``0o666`` less the umask), not mkstemp's ``0o600``."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _as_new(directory: Path, umask: int) -> None:
    """Give ``directory`` and everything in it the modes of new ones (some writers, such as
    safetensors', make their files ``0o600``); links are left alone."""
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def atomic_directory(target: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp_dir)``, then move ``tmp_dir`` to ``target`` (replacing it). What it
    holds gets the permissions of new files and directories (the umask applied), as data."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        _as_new(tmp, _umask())  # mkdtemp made it 0o700
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
