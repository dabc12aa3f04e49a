"""Ctrl-C and ``kill`` (SIGINT, SIGTERM) during ``taskmask train``: the step under way is
abandoned (an exception unwinds it; every file write is atomic), the last checkpoint is kept,
and the command says how to resume, exiting with 128 + the signal number (130, 143)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from taskmask.app.runs import CONFIG_FILE, checkpoint_dir
from taskmask.training import checkpoint

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when one of `SIGNALS` arrives; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` inside the block (main thread only; the
    previous handlers come back after it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_code(stop: KeyboardInterrupt) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + getattr(stop, "signum", signal.SIGINT)


def interrupted_message(out: Path) -> str:
    """What was kept of the interrupted run ``out`` and the command that continues it."""
    directory = checkpoint_dir(out)
    if not (directory / CONFIG_FILE).is_file():
        return "interrupted before training began; nothing was written"
    done = checkpoint.saved_epoch(directory)
    kept = f"the checkpoint of epoch {done} is kept" if done else "no epoch had ended yet"
    return (
        f"interrupted at epoch {done + 1}; resume with: taskmask train --resume {out}\n"
        f"({kept} in {directory})"
    )
