"""Runs in real processes: two trainings on one ``--out`` cannot both run, a stale lock is
taken over, and SIGINT / SIGTERM keep the checkpoint and say how to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from test_cli import config_dict, make_table, run_cli, write_config

import taskmask
from taskmask._io import directory_lock, lock_path
from taskmask.app.runs import checkpoint_dir
from taskmask.errors import TaskmaskError
from taskmask.training import checkpoint

SRC = str(Path(taskmask.__file__).parents[2])
LONG = {"epochs": 400, "batch_size": 64, "lr": 0.01, "seed": 0}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def _wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    write_config(tmp_path, config_dict(training=LONG))
    return tmp_path


def _start_training(workdir: Path) -> subprocess.Popen[str]:
    argv = ["train", "--config", str(workdir / "run.yaml"), "--out", str(workdir / "run"), "-q"]
    return subprocess.Popen(
        [sys.executable, "-m", "taskmask", *argv, "--quiet"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _epoch_saved(run: Path, at_least: int = 1) -> Callable[[], bool]:
    return lambda: checkpoint.saved_epoch(checkpoint_dir(run)) >= at_least


def _short_config(workdir: Path, epochs: int) -> Path:
    path = workdir / "short.yaml"
    path.write_text((workdir / "run.yaml").read_text().replace("epochs: 400", f"epochs: {epochs}"))
    return path


def test_a_second_training_on_the_same_out_fails_at_once(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda *args, **kwargs: [])
    run = workdir / "run"
    first = _start_training(workdir)
    try:
        _wait_for(_epoch_saved(run), "its first checkpoint", first)
        started = time.monotonic()
        code, out, err = run_cli(
            capsys, "train", "-q", "--config", workdir / "run.yaml", "--out", run
        )
        assert time.monotonic() - started < 5 and (code, out) == (2, "")
        assert err.startswith(f"taskmask train: error: {run}: this run directory is in use")
        assert f"(pid {first.pid}, lock file {lock_path(run)})" in err
        code, _, err = run_cli(capsys, "train", "-q", "--resume", run)
        assert code == 2 and f"pid {first.pid}" in err
        assert first.poll() is None  # the first run is untouched
    finally:
        first.kill()
        first.communicate()
    assert lock_path(run).is_file()  # kill -9 leaves the file; the kernel released the lock
    short = _short_config(workdir, 2)
    code, _, err = run_cli(capsys, "train", "-q", "--config", short, "--out", run, "--overwrite")
    assert (code, err) == (0, "") and (run / "model.json").is_file()
    assert sorted(p.name for p in workdir.iterdir()) == [
        "run",
        "run.yaml",
        "short.yaml",
        "train.csv",
    ]


HOLDER = """
import os, sys, time
from pathlib import Path
from taskmask._io import directory_lock
with directory_lock(Path(sys.argv[1])):
    orphan = os.fork()  # an orphan-to-be that inherits the locked descriptor
    if orphan == 0:
        time.sleep(120)
        os._exit(0)
    print(orphan, flush=True)
    time.sleep(120)
"""


def test_a_lock_left_held_by_an_orphan_of_a_dead_run_is_taken_over(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)], env=_env(), stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    orphan = int(holder.stdout.readline())
    holder.stdout.close()  # never communicate(): the orphan keeps the pipe open
    try:
        held = f"in use by another taskmask process \\(pid {holder.pid}"
        with pytest.raises(TaskmaskError, match=held), directory_lock(directory):
            pass
        holder.kill()
        holder.wait()
        with directory_lock(directory):  # the orphan still holds a lock on the old file
            assert lock_path(directory).read_text() == f"{os.getpid()}\n"
        assert not lock_path(directory).exists()
    finally:
        holder.kill()
        holder.wait()
        os.kill(orphan, signal.SIGKILL)


def test_the_lock_is_reentrant_and_released(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    with directory_lock(directory), directory_lock(directory):
        assert lock_path(directory).is_file()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_the_checkpoint_and_says_how_to_resume(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    signum: int,
    code: int,
) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda *args, **kwargs: [])
    run = workdir / "run"
    training = _start_training(workdir)
    _wait_for(_epoch_saved(run, 2), "two checkpoints", training)
    training.send_signal(signum)
    _, err = training.communicate(timeout=60)
    done = checkpoint.saved_epoch(checkpoint_dir(run))
    assert training.returncode == code and done >= 2, err
    assert err == (
        f"taskmask train: interrupted at epoch {done + 1}; resume with: taskmask train "
        f"--resume {run}\n(the checkpoint of epoch {done} is kept in {checkpoint_dir(run)})\n"
    )
    assert not run.exists() and not lock_path(run).exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["run.checkpoint", "run.yaml", "train.csv"]
    short = _short_config(workdir, done + 2)
    result, _, err = run_cli(capsys, "train", "-q", "--resume", run, "--config", short)
    assert (result, err) == (0, "")
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == list(range(1, done + 3))


HANG_IN_FINAL_WRITE = """
import sys, time
from pathlib import Path
import taskmask.app.plots
from taskmask.app.cli import main

def hang(history, out_dir, **_):  # plots are drawn into the run directory's temporary copy
    Path(sys.argv[1]).write_text(str(out_dir))
    time.sleep(120)

taskmask.app.plots.plot_history = hang
sys.exit(main(sys.argv[2:]))
"""


def test_kill_9_during_the_final_write_leaves_nothing_for_good(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda *args, **kwargs: [])
    run, marker = workdir / "run", workdir / "writing"
    short = _short_config(workdir, 2)
    argv = ["train", "--config", str(short), "--out", str(run), "--quiet"]
    training = subprocess.Popen(
        [sys.executable, "-c", HANG_IN_FINAL_WRITE, str(marker), *argv],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker.exists, "the final write", training)
    training.kill()
    training.communicate()
    copy = Path(marker.read_text()).parent
    assert copy.name.startswith(f".run.tmp-{training.pid}-") and (copy / "model.json").is_file()
    code, _, err = run_cli(capsys, "train", "-q", "--resume", run)
    assert (code, err) == (0, "") and (run / "model.json").is_file()
    left = sorted(p.name for p in workdir.iterdir())
    assert left == ["run", "run.yaml", "short.yaml", "train.csv", "writing"]
