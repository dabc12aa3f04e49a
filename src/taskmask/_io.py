"""Atomic writes: a reader sees the old file (or directory) or the whole new one, never a part.

A write that fails raises `OSError` naming the file it was writing (never only its temporary
name), so that "No space left on device" says where. The temporary directory of
`atomic_directory` is named ``.NAME.tmp-PID-XXXX`` and the replaced one ``.NAME.old-PID``: the
next write of ``NAME`` removes those its dead writer left behind (``kill -9`` mid-write), and
puts a stale ``.NAME.old-PID`` back in place if ``NAME`` itself is missing (the writer died
between its two renames).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from taskmask.errors import TaskmaskError


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (possibly under another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an `OSError` as one that names ``path`` (the target, not a temporary)."""
    try:
        yield
    except OSError as error:
        if error.filename is not None and Path(error.filename) == path:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


def _umask() -> int:
    """The process's umask (reading it means setting it: put straight back)."""
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def _as_new(directory: Path, umask: int) -> None:
    """Give ``directory`` and everything in it the modes of new ones (some writers, such as
    safetensors', make their files ``0o600``); links are left alone."""
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, sync it to disk, then rename it to
    ``path``: readers see the old file or the whole new one, never a part. The file gets the
    permissions of any new file (``0o666`` less the umask), not mkstemp's ``0o600``."""
    with _naming(path):
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        tmp = Path(name)
        try:
            write(tmp)
            with open(tmp, "rb+") as file:
                os.fsync(file.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0o600
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def clean_stale(target: Path) -> None:
    """Remove what a dead writer of ``target`` left beside it; restore its old copy if the
    writer died between moving ``target`` aside and moving the new one in."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(tmp|old)-(\d+)(-.*)?")
    if not target.parent.is_dir():
        return
    for path in sorted(target.parent.iterdir()):
        match = pattern.fullmatch(path.name)
        if match is None or pid_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not target.exists():
            os.replace(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)


def atomic_directory(target: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp_dir)``, then move ``tmp_dir`` to ``target`` (replacing a directory,
    never a file: that is a `TaskmaskError`). What it holds gets the permissions of new files
    and directories (the umask applied)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise TaskmaskError(f"{target}: is a file, not a directory; refusing to replace it")
    with _naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        prefix = f".{target.name}.tmp-{os.getpid()}-"
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            write(tmp)
            _as_new(tmp, _umask())  # mkdtemp made it 0o700, safetensors 0o600
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


_HELD: dict[Path, int] = {}  # lock file -> how many times this process holds it


def lock_path(directory: Path) -> Path:
    """The lock file of ``directory``: ``.NAME.lock`` beside it."""
    directory = Path(directory).resolve()
    return directory.with_name(f".{directory.name}.lock")


def _holder(path: Path) -> int:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() else 0


def _try_lock(path: Path) -> int | None:
    """An open, locked descriptor of ``path`` (written with this pid), or None if a live
    process holds it. A lock whose recorded pid is dead (left held by an orphaned child that
    inherited it) is taken over: the file is replaced, so the orphan holds an unlinked one."""
    import fcntl  # POSIX only: imported where used, so that the rest of taskmask imports anywhere

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _holder(path)
        if holder == 0 or pid_alive(holder):  # 0: the holder has not written its pid yet
            return None
        path.unlink(missing_ok=True)  # stale: the next attempt creates a fresh file
        return _try_lock(path)
    if not path.exists() or os.stat(path).st_ino != os.fstat(fd).st_ino:
        os.close(fd)  # replaced by a process that took over a stale lock meanwhile
        return _try_lock(path)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def directory_lock(directory: Path, *, what: str = "directory") -> Iterator[None]:
    """Hold the advisory lock of ``directory`` (`lock_path`, holding this pid) until the block
    ends; the lock file is removed then. The kernel releases it when the process dies. Held
    by another live process: `TaskmaskError` naming ``directory`` and that pid. Re-entrant
    within one process."""
    path = lock_path(directory)
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _try_lock(path)
    if fd is None:
        raise TaskmaskError(
            f"{directory}: this {what} is in use by another taskmask process (pid "
            f"{_holder(path) or 'not yet written'}, lock file {path}); wait for it to end or "
            "choose another"
        )
    _HELD[path] = 1
    try:
        yield
    finally:
        del _HELD[path]
        path.unlink(missing_ok=True)
        os.close(fd)
