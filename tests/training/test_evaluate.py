"""One evaluation for the API, the trainer and the CLI: per-task metrics and losses in one
structure, multilabel set metrics, cross-task means, a monitor checked before epoch 1, and the
trainer's callbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from taskmask.api import evaluate as api_evaluate
from taskmask.data import MultiTaskData, make_data
from taskmask.errors import TaskmaskError
from taskmask.functional import multilabel_metrics
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel, raw_outputs
from taskmask.tasks import Task
from taskmask.training import Callback, EarlyStopping, Fit, TrainConfig, Trainer, evaluate

N_FEATURES = 4
BINARY = Task(name="b", kind="binary")
SCENE = Task(name="s", kind="multilabel", labels=("sea", "sky", "sun"))
VALUES = Task(name="r", kind="regression")
TASKS = (BINARY, SCENE, VALUES)


def _model(tasks: tuple[Task, ...] = TASKS) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(MLPTrunk(N_FEATURES, MLPConfig(hidden=(8,))), tasks, (N_FEATURES,))


def _raw(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    binary = np.where(rng.random(n) < 0.3, -1.0, (x[:, 0] > 0).astype(np.float64))
    flags = (x[:, 1:4] > 0).astype(np.float64)
    flags[rng.random(flags.shape) < 0.3] = -1.0
    values = np.where(rng.random(n) < 0.3, np.nan, x[:, 0] - x[:, 3])
    return x, {"b": binary, "s": flags, "r": values}


def _data(n: int, seed: int) -> MultiTaskData:
    x, labels = _raw(n, seed)
    return make_data(x, labels, TASKS)


def _config(**options: object) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 16, "lr": 1e-2, "progress": False, "device": "cpu"}
    return TrainConfig.model_validate({**base, **options})


def test_multilabel_reports_exact_match_and_hamming_loss_of_the_observed_entries() -> None:
    model = _model()
    x, labels = _raw(80, seed=1)
    result = api_evaluate(model, x, labels)
    probs = torch.sigmoid(raw_outputs(model, torch.as_tensor(x, dtype=torch.float32))["s"])
    flags = labels["s"]
    expected = multilabel_metrics(
        probs.double().numpy(), np.where(flags < 0, 0.0, flags), flags >= 0, thresholds=[0.5] * 3
    )
    assert result["s"]["exact_match"] == pytest.approx(expected["exact_match"])
    assert result["s"]["hamming_loss"] == pytest.approx(expected["hamming_loss"])
    assert result["s"]["n_complete"] == float((flags >= 0).all(axis=1).sum())
    assert "exact_match" not in result["b"]


def test_one_structure_holds_losses_metrics_and_means() -> None:
    model = _model()
    result = evaluate(model, _data(60, seed=2))
    assert set(result) == {"b", "s", "r"}
    assert set(result.losses) == {"b", "s", "r"}
    defined = [v for v in result.losses.values() if not math.isnan(v)]
    assert result.means["loss"] == pytest.approx(sum(defined) / len(defined))
    aucs = [float(result["b"]["roc_auc"]), float(result["s"]["roc_auc_macro"])]
    assert result.means["roc_auc"] == pytest.approx(sum(aucs) / 2)
    assert result.means["mae"] == pytest.approx(float(result["r"]["mae"]))  # one task has it
    row = result.row("val")
    assert row["val/mean/roc_auc"] == result.means["roc_auc"]
    assert row["val/s/hamming_loss"] == float(result["s"]["hamming_loss"])
    assert row["val/loss"] == pytest.approx(sum(result.losses.values()))  # weights 1


def test_means_leave_out_auxiliary_tasks_and_undefined_values() -> None:
    helper = Task(name="h", kind="binary", auxiliary=True)
    model = _model((BINARY, helper))
    x = np.random.default_rng(3).normal(size=(40, N_FEATURES))
    constant = np.ones(40)  # one class only: roc_auc undefined
    result = evaluate(model, make_data(x, {"b": constant, "h": (x[:, 0] > 0) * 1.0}, model.tasks))
    assert "roc_auc" not in result.means
    assert result.means["loss"] == pytest.approx(result.losses["b"])


def test_the_api_the_trainer_and_the_history_agree() -> None:
    train, validation = _data(96, seed=4), _data(48, seed=5)
    model = _model()
    trainer = Trainer(_config())
    history = trainer.fit(model, train, validation=validation)
    last = {k: v for k, v in history[-1].items() if k.startswith("val/")}
    again = trainer.evaluate(model, validation)
    assert last.keys() == again.keys()
    torch.testing.assert_close(
        torch.tensor([last[k] for k in last]),
        torch.tensor([again[k] for k in last]),
        equal_nan=True,
    )
    x, labels = _raw(48, seed=5)
    metrics = api_evaluate(model, x, labels)
    assert float(metrics["s"]["exact_match"]) == pytest.approx(last["val/s/exact_match"])
    assert "val/mean/roc_auc" in last and "train/mean/roc_auc" in history[-1]


def test_early_stopping_may_monitor_a_cross_task_mean() -> None:
    train, validation = _data(96, seed=6), _data(48, seed=7)
    stopping = EarlyStopping(monitor="val/mean/roc_auc", patience=1, restore_best=False)
    trainer = Trainer(_config(epochs=30, lr=0.2, early_stopping=stopping))
    history = trainer.fit(_model(), train, validation=validation)
    values = [row["val/mean/roc_auc"] for row in history]
    assert len(history) < 30
    assert values[-1] <= max(values[:-1])  # mode auto: higher is better


@pytest.mark.parametrize(
    ("monitor", "hint"),
    [("val/nope/roc_auc", "tasks: ['b', 'r', 's']"), ("val/mean", "{part}/mean/<metric>")],
)
def test_an_unknown_monitor_is_refused_before_epoch_1(monitor: str, hint: str) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(_config(early_stopping=EarlyStopping(monitor=monitor)))
    with pytest.raises(TaskmaskError, match="valid forms") as error:
        trainer.fit(model, _data(32, seed=8), validation=_data(16, seed=9))
    assert hint in str(error.value) and repr(monitor) in str(error.value)
    assert trainer.history == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_monitor_outside_val_and_train_is_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="monitor"):
        EarlyStopping(monitor="loss")


class _Recorder(Callback):
    """Counts the hooks and stops after ``stop_at`` epochs."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at, self.starts, self.ends, self.batches = stop_at, 0, 0, 0
        self.widths: set[int] = set()

    def on_fit_start(self, fit: Fit) -> None:
        self.starts += 1

    def on_losses(self, fit: Fit, losses: torch.Tensor, counts: torch.Tensor) -> None:
        self.batches += 1
        self.widths.add(losses.shape[0])

    def on_epoch_end(self, fit: Fit, row: dict[str, float]) -> bool:
        row["recorded"] = 1.0
        return len(fit.history) >= self.stop_at

    def on_fit_end(self, fit: Fit) -> None:
        self.ends += 1


def test_a_callback_sees_every_batch_adds_to_the_row_and_stops_training() -> None:
    recorder = _Recorder(stop_at=2)
    trainer = Trainer(_config(epochs=5), callbacks=[recorder])
    history = trainer.fit(_model(), _data(64, seed=10))
    assert len(history) == 2 and all(row["recorded"] == 1.0 for row in history)
    assert (recorder.starts, recorder.ends) == (1, 1)
    assert recorder.batches == 2 * 4 and recorder.widths == {3}
