"""Training runs on series data: NPZ arrays kept whole, CNN trunks, generated auxiliary targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from taskmask.app.cli import main
from taskmask.app.config import RunConfig
from taskmask.app.runs import read_with_generated
from taskmask.persistence import load_model


def _series_run(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3, 40)).astype(np.float32)
    x[:60] *= 3.0  # the label is the amplitude: the std target carries it
    y = np.r_[np.ones(60), np.zeros(60)]
    y[::4] = np.nan
    np.savez(folder / "series.npz", X=x, y=y)
    config = {
        "data": {"train": "series.npz", "features": "X", "validation_split": 0.25},
        "tasks": [
            {"name": "y", "kind": "binary"},
            {
                "name": "std",
                "kind": "regression",
                "generator": "std",
                "auxiliary": True,
                "weight": 0.1,
                "attach_to": "block1",
            },
            {
                "name": "fft",
                "kind": "regression",
                "generator": "fourier",
                "generator_options": {"k": 2},
                "auxiliary": True,
                "weight": 0.1,
            },
        ],
        "model": {"trunk": {"type": "cnn1d", "channels": [4, 8], "kernel_size": 3, "pool": 2}},
        "standardize": "channel",
        "training": {"epochs": 2, "batch_size": 32, "train_metrics": False},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(config))
    return folder / "run.yaml"


def test_generated_targets_are_computed_from_each_file(tmp_path: Path) -> None:
    from taskmask.app.config import load_config

    config = load_config(_series_run(tmp_path))
    part = read_with_generated(config, config.data.train)
    assert part.inputs.shape == (120, 3, 40) and part.feature_names is None
    stds = np.load(tmp_path / "series.npz")["X"].std(axis=2)
    np.testing.assert_allclose(part.labels["std"], stds, rtol=1e-5)
    assert part.labels["fft"].shape == (120, 6)
    only = read_with_generated(config, config.data.train, tasks=("y",))
    assert set(only.labels) == {"y"}


def test_series_run_trains_saves_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _series_run(tmp_path)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    model = load_model(tmp_path / "run")
    assert model.task_names == ("y",) and model.input_shape == (3, 40)
    assert model.standardize and model.input_mean[0, :, 0].tolist() != [0.0, 0.0, 0.0]
    # per-channel statistics: every position of a channel has the same mean
    assert (model.input_mean[0] == model.input_mean[0, :, :1]).all()
    history = pd.read_csv(tmp_path / "run" / "history_long.csv", keep_default_na=False)
    losses = history[(history["split"] == "train") & (history["metric"] == "loss")]
    assert {"std", "fft"} <= set(losses["task"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"y"}
    capsys.readouterr()
    code = main(
        ["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "series.npz"), "--json"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["data"]["y"]["n_observed"] == 90


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "binary"}, "generated targets are regression targets"),
        ({"generator": "kurtosis"}, "unknown generator 'kurtosis'"),
        ({"column": "y"}, "a generated target reads no column"),
    ],
)
def test_bad_generator_specs_are_rejected(tmp_path: Path, change: dict, message: str) -> None:
    raw = yaml.safe_load(_series_run(tmp_path).read_text())
    raw["tasks"][1].update(change)
    with pytest.raises(ValueError, match=message):
        RunConfig.model_validate(raw)
