"""Column names with dots work as task, label and feature names through the CLI: train,
evaluate, predict, and a saved model loading back identically; two tasks that would write one
prediction column are refused before training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from taskmask.app.cli import main
from taskmask.model import raw_outputs
from taskmask.persistence import load_model

FEATURES = ["x.0", "x.1", "x.2"]


def _table(n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.random((n_rows, 3))

    def holes(values: Any) -> pd.Series:
        return pd.Series(values).mask(rng.random(n_rows) < 0.3)

    frame = pd.DataFrame({name: x[:, j] for j, name in enumerate(FEATURES)})
    frame["tox"] = holes(x[:, 0] > 0.5).astype("Int8")
    frame["tox.1"] = holes(x[:, 1] > 0.4).astype("Int8")  # pandas' name for a second "tox"
    frame["sea.v2"] = holes(x[:, 1] > 0.5).astype("Int8")
    frame["sun.v2"] = holes(x[:, 2] > 0.5).astype("Int8")
    frame["colour.name"] = holes(np.array(["red", "green", "blue"])[x.argmax(axis=1)])
    frame["age.years"] = holes(30 + 10 * x[:, 0])
    frame["aux.y"] = holes(x[:, 2] > 0.3).astype("Int8")
    return frame


def _config(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {"train": "train.csv", "features": FEATURES, "validation_split": 0.25},
        "tasks": tasks,
        "model": {"trunk": {"hidden": [8]}},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01, "seed": 0},
    }


TASKS = [
    {"name": "tox", "kind": "binary"},
    {"name": "tox.1", "kind": "binary"},
    {"name": "scene.v2", "kind": "multilabel", "columns": ["sea.v2", "sun.v2"]},
    {"name": "colour.name", "kind": "multiclass"},
    {"name": "age.years", "kind": "regression"},
    {"name": "aux.y", "kind": "binary", "auxiliary": True},
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("taskmask.app.plots.plot_history", lambda history, out_dir, **_: [])
    _table(160, 0).to_csv(tmp_path / "train.csv", index=False)
    _table(40, 1).to_csv(tmp_path / "test.csv", index=False)
    return tmp_path


def test_dotted_names_train_evaluate_predict_and_load(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "run.yaml").write_text(yaml.safe_dump(_config(TASKS)))
    assert main(["train", "--config", "run.yaml", "--out", "run", "--quiet"]) == 0
    model = load_model(workdir / "run")
    assert model.task_names == ("tox", "tox.1", "scene.v2", "colour.name", "age.years")
    assert model.feature_names == tuple(FEATURES)
    saved = set(model.state_dict())
    assert {"heads.tox.weight", "heads.tox%2E1.weight", "heads.age%2Eyears.bias"} <= saved
    assert not any(key.startswith("heads.aux") for key in saved)  # auxiliary heads not saved
    capsys.readouterr()

    assert main(["evaluate", "run", "--data", "test.csv", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["data"]
    assert {"tox", "tox.1", "scene.v2", "colour.name", "age.years"} <= set(report)
    assert report["tox.1"]["n_observed"] == int(_table(40, 1)["tox.1"].notna().sum())

    assert main(["predict", "run", "--data", "test.csv", "--out", "pred.csv"]) == 0
    columns = list(pd.read_csv(workdir / "pred.csv").columns)
    assert columns == [
        "tox.prob",
        "tox.pred",
        "tox.1.prob",
        "tox.1.pred",
        "scene.v2.prob.sea.v2",
        "scene.v2.prob.sun.v2",
        "scene.v2.pred.sea.v2",
        "scene.v2.pred.sun.v2",
        "scene.v2.labels",
        "colour.name.prob.blue",
        "colour.name.prob.green",
        "colour.name.prob.red",
        "colour.name.pred",
        "age.years.value",
    ]
    x = torch.tensor(_table(40, 1)[FEATURES].to_numpy(), dtype=torch.float32)
    again = load_model(workdir / "run")
    expected, got = raw_outputs(model, x), raw_outputs(again, x)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    frame = pd.read_csv(workdir / "pred.csv")
    probability = torch.sigmoid(expected["tox.1"][:, 0]).double().numpy()
    np.testing.assert_allclose(frame["tox.1.prob"], probability, rtol=1e-6)


def test_two_tasks_writing_one_prediction_column_are_refused_before_training(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _table(160, 0)
    frame["prob"], frame["pred"], frame["a.prob"] = frame["tox"], frame["tox.1"], frame["tox"]
    frame.to_csv(workdir / "train.csv", index=False)
    tasks = [
        {"name": "a", "kind": "multilabel", "columns": ["prob", "pred"]},  # a.prob.prob, ...
        {"name": "a.prob", "kind": "binary"},  # a.prob.prob, a.prob.pred
    ]
    (workdir / "run.yaml").write_text(yaml.safe_dump(_config(tasks)))
    assert main(["train", "--config", "run.yaml", "--out", "run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'a' and 'a.prob'" in err and "'a.prob.prob'" in err
    assert not (workdir / "run").exists()


def _dotted_fit(directory: Path | None, epochs: int, *, resume: bool = False) -> dict[str, Any]:
    from taskmask import MLPConfig, MLPTrunk, MultiTaskModel, Task, make_data
    from taskmask.training import TrainConfig, Trainer

    frame = _table(120, 2)
    tasks = (
        Task(name="tox.1", kind="binary"),
        Task(name="scene.v2", kind="multilabel", labels=("sea.v2", "sun.v2")),
        Task(name="age.years", kind="regression"),
    )
    labels = {
        "tox.1": frame["tox.1"].to_numpy(dtype=float, na_value=np.nan),
        "scene.v2": frame[["sea.v2", "sun.v2"]].to_numpy(dtype=float, na_value=np.nan),
        "age.years": frame["age.years"].to_numpy(dtype=float),
    }
    data = make_data(frame[FEATURES].to_numpy(), labels, tasks)
    torch.manual_seed(0)
    net = MultiTaskModel(MLPTrunk(3, MLPConfig(hidden=(8,))), tasks, (3,))
    config = {"epochs": epochs, "batch_size": 16, "lr": 1e-2, "progress": False, "seed": 3}
    config |= {"weighting": "uncertainty", "device": "cpu"}
    if directory is not None:
        config["checkpoint_dir"] = str(directory)
    Trainer(TrainConfig.model_validate(config)).fit(net, data, resume=resume)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_a_run_with_dotted_names_resumes_from_its_checkpoint_bit_for_bit(tmp_path: Path) -> None:
    whole = _dotted_fit(None, 4)
    _dotted_fit(tmp_path / "ckpt", 2)
    resumed = _dotted_fit(tmp_path / "ckpt", 4, resume=True)
    assert "heads.scene%2Ev2.weight" in resumed and resumed.keys() == whole.keys()
    for key in whole:
        assert torch.equal(resumed[key], whole[key]), key
