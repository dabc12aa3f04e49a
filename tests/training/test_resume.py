"""Crashes cost no more than the current epoch: a run killed with SIGKILL mid-epoch and resumed
from its last checkpoint ends with the same weights, bit for bit, as a run never interrupted;
so does a run continued in process, whatever its weighting or early-stopping state."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_cli import config_dict, make_table
from training_script import model, problem, train

from taskmask.app.cli import main
from taskmask.app.runs import checkpoint_dir
from taskmask.errors import TaskmaskError
from taskmask.training import TrainConfig, Trainer, checkpoint

SCRIPT = Path(__file__).parents[1] / "training_script.py"
BASE = {"batch_size": 16, "lr": 1e-2, "progress": False, "device": "cpu", "seed": 3}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _same_history(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    def strip(rows: list[dict[str, float]]) -> list[dict[str, Any]]:
        return [
            {k: "nan" if math.isnan(v) else v for k, v in row.items() if k != "seconds"}
            for row in rows
        ]

    return strip(a) == strip(b)


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the run ended (code {process.returncode}) first:\n{err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.005)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # as in this process: same arithmetic


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa", "famo", "gradnorm"])
def test_a_resumed_run_ends_as_an_uninterrupted_one(tmp_path: Path, weighting: str) -> None:
    """Two epochs, a checkpoint, a new process-like start with ``resume``: the same weights
    and history as four epochs in one go (dropout and early stopping included)."""
    config = {
        **BASE,
        "weighting": weighting,
        "validation_split": 0.2,
        "early_stopping": {"patience": 10},
        "conflict_batches": 1,
    }
    whole, history = train("whole", tmp_path, {**config, "epochs": 4}, dropout=0.2)
    config["checkpoint_dir"] = str(tmp_path / "ckpt")
    train("first", tmp_path, {**config, "epochs": 2}, dropout=0.2)
    resumed, resumed_history = train(
        "resumed", tmp_path, {**config, "epochs": 4}, resume=True, dropout=0.2
    )
    _assert_same_weights(whole.state_dict(), resumed.state_dict())
    assert _same_history(history, resumed_history)
    assert len(resumed_history) == 4


def test_an_early_stopped_run_resumes_to_its_best_weights(tmp_path: Path) -> None:
    config = {**BASE, "validation_split": 0.3, "epochs": 30, "lr": 0.3}
    config["early_stopping"] = {"patience": 1, "min_delta": 0.5}
    config["checkpoint_dir"] = str(tmp_path / "ckpt")
    stopped, history = train("stopped", tmp_path, config)
    assert len(history) < 30
    assert checkpoint.load(tmp_path / "ckpt").meta["stopped"] is True
    again, again_history = train("again", tmp_path, config, resume=True)
    _assert_same_weights(stopped.state_dict(), again.state_dict())
    assert _same_history(history, again_history)


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """SIGKILL in the 6th batch of epoch 2 (13 batches an epoch), after epoch 1's checkpoint."""
    config = {**BASE, "epochs": 4, "checkpoint_dir": str(tmp_path / "ckpt")}
    jobs = [{"name": "killed", "out": str(tmp_path), "config": config}]
    jobs[0]["options"] = {"hang_after": 13 + 6}
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path / "jobs.json")],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(tmp_path / "killed.hanging", process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert checkpoint.load(tmp_path / "ckpt").meta["epoch"] == 1
    resumed, _ = train("resumed", tmp_path, config, resume=True)
    whole, _ = train("whole", tmp_path, {**config, "checkpoint_dir": None})
    _assert_same_weights(whole.state_dict(), resumed.state_dict())


def test_taskmask_train_killed_then_resumed_writes_the_same_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``taskmask train`` in its own process, SIGKILLed as soon as a checkpoint exists, then
    ``taskmask train --resume RUN_DIR``: the model equals that of a run never interrupted."""
    make_table(3000).to_csv(tmp_path / "train.csv", index=False)
    training = {"epochs": 6, "batch_size": 32, "lr": 0.01, "seed": 0, "train_metrics": False}
    raw = config_dict(training=training, model={"trunk": {"hidden": [32, 32]}})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(run), "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "taskmask", *argv],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(checkpoint_dir(run) / checkpoint.INDEX_FILE, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not run.exists()
    assert checkpoint.load(checkpoint_dir(run)).meta["epoch"] < 6
    assert main(argv) == 2  # a fresh start is refused: it would lose the checkpoint
    assert f"--resume {run}" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert not checkpoint_dir(run).exists()
    reference = tmp_path / "reference"
    assert main([*argv[:3], "--out", str(reference), "--quiet"]) == 0
    _assert_same_weights(
        load_file(run / "model.safetensors"), load_file(reference / "model.safetensors")
    )
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 7  # header + 6 epochs, the first ones from the checkpoint


def test_resume_without_a_checkpoint_is_an_error(tmp_path: Path) -> None:
    data = problem()
    with pytest.raises(TaskmaskError, match="needs a checkpoint_dir"):
        Trainer(TrainConfig(**BASE, epochs=1)).fit(model(), data, resume=True)
    config = TrainConfig(**BASE, epochs=1, checkpoint_dir=tmp_path / "none")
    with pytest.raises(TaskmaskError, match="no checkpoint to resume from"):
        Trainer(config).fit(model(), data, resume=True)


def test_resuming_with_other_settings_names_them(tmp_path: Path) -> None:
    config = {**BASE, "epochs": 1, "checkpoint_dir": str(tmp_path / "ckpt")}
    train("first", tmp_path, config)
    with pytest.raises(TaskmaskError, match=r"(?s)different run.*lr: 0\.01 in the checkpoint"):
        train("other", tmp_path, {**config, "lr": 0.1}, resume=True)
    train("more", tmp_path, {**config, "epochs": 2}, resume=True)  # epochs may change


def test_cli_resume_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no interrupted run to resume" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "x.yaml")]) == 2
    assert "--resume RUN_DIR" in capsys.readouterr().err
    assert main(["train", "--resume", "a", "--out", "b"]) == 2
    assert "leave out --out" in capsys.readouterr().err


def test_resume_with_a_config_starts_a_run_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config C --resume RUN`` starts RUN when nothing is left to resume (so that one
    command can be rerun after any failure), and never replaces a finished RUN."""
    make_table(120).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config_dict()))
    run = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "run.yaml"), "--resume", str(run), "--quiet"]
    assert main(argv) == 0
    assert (run / "model.json").exists() and not checkpoint_dir(run).exists()
    capsys.readouterr()
    assert main(argv) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
