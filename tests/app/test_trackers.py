"""Trackers against the real thing: TensorBoard event files read back with TensorBoard's own
reader, and a local MLflow store (SQLite) read back with MLflow's client. No mocks."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from test_cli import config_dict, make_table, run_cli, write_config

from taskmask.app.config import load_config
from taskmask.app.trackers import flatten
from taskmask.errors import TaskmaskError

# MLflow's SQLAlchemy store and TensorBoard's protobuf code warn about their own internals
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def _train(tmp_path: Path, capsys: pytest.CaptureFixture[str], trackers: dict) -> Path:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    training = {**config_dict()["training"], "epochs": 3}
    path = write_config(tmp_path, config_dict(training=training, trackers=trackers))
    code, _, err = run_cli(capsys, "train", "--config", path, "--out", tmp_path / "run")
    assert code == 0, err
    return tmp_path / "run"


@pytest.mark.slow
def test_tensorboard_gets_every_history_column_per_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _train(tmp_path, capsys, {"tensorboard": "tb"})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    history = pd.read_csv(run / "history.csv")
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "lr", "val/tox/roc_auc"} <= scalars
    steps = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in steps] == [1, 2, 3]
    assert [v for _, v in steps] == pytest.approx(history["train/loss"].tolist(), rel=1e-6)
    (final,) = events.Scalars("validation/tox/accuracy")
    assert final.step == 3 and 0 <= final.value <= 1
    assert "config/text_summary" in events.Tags()["tensors"]


@pytest.mark.slow
def test_mlflow_gets_parameters_metrics_and_the_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # MLflow puts a SQLite store's artefacts in ./mlartifacts
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = {"tracking_uri": uri, "experiment": "tox", "run_name": "first"}
    run = _train(tmp_path, capsys, {"mlflow": settings})
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tox")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "first"
    params = logged.data.params
    assert params["training.lr"] == "0.01" and params["tasks.scene.kind"] == "multilabel"
    assert "tasks.tox.loss" not in params  # only what applies
    history = pd.read_csv(run / "history.csv")
    losses = client.get_metric_history(logged.info.run_id, "val/loss")
    assert [m.step for m in losses] == [1, 2, 3]
    assert [m.value for m in losses] == pytest.approx(history["val/loss"].tolist())
    assert math.isfinite(logged.data.metrics["validation/tox/accuracy"])
    artefacts = {a.path for a in client.list_artifacts(logged.info.run_id, "run")}
    assert {"run/model.safetensors", "run/model.json", "run/README.md"} <= artefacts


def test_parameters_flatten_with_tasks_by_name() -> None:
    raw = {
        "training": {"lr": 0.1, "scheduler": {"type": "cosine"}},
        "tasks": [{"name": "a", "kind": "binary"}],
    }
    assert dict(flatten(raw)) == {
        "training.lr": 0.1,
        "training.scheduler.type": "cosine",
        "tasks.a.kind": "binary",
    }


def test_a_tensorboard_directory_is_relative_to_the_config(tmp_path: Path) -> None:
    make_table().to_csv(tmp_path / "train.csv", index=False)
    config = load_config(write_config(tmp_path, config_dict(trackers={"tensorboard": "tb"})))
    assert config.trackers.tensorboard == tmp_path / "tb"
    path = write_config(tmp_path, config_dict(trackers={"wandb": {}}))
    with pytest.raises(
        TaskmaskError, match=r"trackers\.wandb: unknown key; allowed keys: tensorboard, mlflow"
    ):
        load_config(path)
