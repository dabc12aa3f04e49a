"""The training loop: masked losses per batch, optimiser parity with torch, clipping, early
stopping that restores the best weights, and a history whose losses count observed labels only."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from taskmask.data import MultiTaskData, make_data
from taskmask.errors import TaskmaskError
from taskmask.functional import LossTerm
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel, raw_outputs
from taskmask.tasks import Task, task_loss
from taskmask.training import EarlyStopping, TrainConfig, Trainer

N_FEATURES = 3
BINARY = Task(name="b", kind="binary", weight=2.0)
CLASSES = Task(name="c", kind="multiclass", labels=("x", "y", "z"))
VALUES = Task(name="r", kind="regression", n_outputs=2, weight=0.5)
TASKS = (BINARY, CLASSES, VALUES)


def _config(**options: object) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 16, "lr": 1e-2, "progress": False, "device": "cpu"}
    return TrainConfig.model_validate({**base, **options})


def _model(tasks: tuple[Task, ...] = TASKS, hidden: tuple[int, ...] = (8,)) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(MLPTrunk(N_FEATURES, MLPConfig(hidden=hidden)), tasks, (N_FEATURES,))


def _raw(n: int, seed: int, missing: float = 0.3) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Features and learnable raw labels for TASKS, a fraction ``missing`` of them NaN."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    binary = (x[:, 0] > 0).astype(np.float64)
    classes = np.digitize(x[:, 1], [-0.4, 0.4]).astype(np.float64)
    values = np.stack([x[:, 0] + x[:, 2], x[:, 1] - x[:, 2]], axis=1)
    labels = {"b": binary, "c": classes, "r": values}
    for name, array in labels.items():
        labels[name] = np.where(rng.random(array.shape) < missing, np.nan, array)
    return x, labels


def _data(n: int, seed: int, tasks: tuple[Task, ...] = TASKS, **kw: float) -> MultiTaskData:
    x, labels = _raw(n, seed, **kw)
    return make_data(x, {t.name: labels[t.name] for t in tasks}, tasks)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_a_task_without_observed_labels_raises_naming_it() -> None:
    x, labels = _raw(20, 0)
    labels["c"][:] = np.nan
    data = make_data(x, labels, TASKS)
    with pytest.raises(TaskmaskError, match=r"tasks \['c'\] have no observed label"):
        Trainer(_config()).fit(_model(), data)


def test_unresolved_balanced_pos_weight_raises() -> None:
    tasks = (Task(name="b", kind="binary", pos_weight="balanced"),)
    with pytest.raises(TaskmaskError, match="resolve pos_weight='balanced'"):
        Trainer(_config()).fit(_model(tasks), _data(20, 0, tasks))


def test_batches_where_a_task_has_nothing_observed_train_without_nan() -> None:
    data = _data(200, 1)
    sparse = torch.zeros(200, dtype=torch.bool)
    sparse[137] = True  # "c" observed in one row only: 19 of 20 batches have none
    data.labels["c"].observed.copy_(sparse)  # type: ignore[union-attr]
    model = _model()
    history = Trainer(_config(batch_size=10, epochs=2)).fit(model, data)
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all(), name
    for row in history:
        assert row["train/c/n_observed"] == 1.0
        for key in ("train/loss", "train/b/loss", "train/c/loss", "train/r/loss"):
            assert math.isfinite(row[key]), key


def test_train_loss_in_history_is_the_mean_over_observed_labels_of_all_batches() -> None:
    sums: list[float] = []
    counts: list[float] = []

    def recording(task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor):
        term = task_loss(task, output, target, observed)
        sums.append(float(term.sum.detach()))
        counts.append(float(term.count))
        return term

    data = _data(50, 2, missing=0.6)
    trainer = Trainer(_config(epochs=1, batch_size=7), loss_fns={"r": recording})
    history = trainer.fit(_model(), data)
    assert len(sums) == 8  # ceil(50 / 7) batches
    assert sum(counts) == float(data.labels["r"].observed.sum())
    expected = sum(sums) / sum(counts)  # not the mean of per-batch means
    assert history[0]["train/r/loss"] == pytest.approx(expected, rel=1e-5)


def test_validation_loss_in_history_is_the_mean_over_observed_labels() -> None:
    train, val = _data(60, 3), _data(40, 4, missing=0.5)
    model = _model()
    history = Trainer(_config()).fit(model, train, validation=val)
    out = raw_outputs(model, val.inputs)
    last = history[-1]
    seen = {name: enc.observed for name, enc in val.labels.items()}
    target = {name: enc.target for name, enc in val.labels.items()}
    expected = {
        "b": F.binary_cross_entropy_with_logits(out["b"][seen["b"]], target["b"][seen["b"]]),
        "c": F.cross_entropy(out["c"][seen["c"]], target["c"][seen["c"]]),
        "r": F.mse_loss(out["r"][seen["r"]], target["r"][seen["r"]]),
    }
    for name, value in expected.items():
        assert last[f"val/{name}/loss"] == pytest.approx(float(value), rel=1e-5)
    weighted = sum(t.weight * last[f"val/{t.name}/loss"] for t in TASKS)
    assert last["val/loss"] == pytest.approx(weighted, rel=1e-6)


def test_history_has_per_task_losses_metrics_and_weights() -> None:
    history = Trainer(_config(epochs=2)).fit(_model(), _data(40, 5), validation=_data(30, 6))
    assert [row["epoch"] for row in history] == [1.0, 2.0]
    row = history[-1]
    for prefix in ("train", "val"):
        for task in TASKS:
            assert math.isfinite(row[f"{prefix}/{task.name}/loss"])
        for key in ("b/roc_auc", "b/f1", "b/accuracy", "c/accuracy", "c/f1_macro", "c/f1/y"):
            assert 0.0 <= row[f"{prefix}/{key}"] <= 1.0, key
        for key in ("r/r2_macro", "r/mse/r_0", "r/mae/r_1", "r/mse_macro"):
            assert math.isfinite(row[f"{prefix}/{key}"]), key
        weighted = sum(t.weight * row[f"{prefix}/{t.name}/loss"] for t in TASKS)
        assert row[f"{prefix}/loss"] == pytest.approx(weighted, rel=1e-6)
    assert (row["weight/b"], row["weight/c"], row["weight/r"]) == (2.0, 1.0, 0.5)
    assert row["seconds"] > 0.0


def test_validation_split_holds_out_rows_for_validation() -> None:
    data = _data(80, 7)
    history = Trainer(_config(epochs=1, validation_split=0.25)).fit(_model(), data)
    row, total = history[0], data.n_observed()
    for key, name in (("b/n_observed", "b"), ("c/n_observed", "c")):
        assert 0 < row[f"val/{key}"] < total[name]
        assert row[f"train/{key}"] + row[f"val/{key}"] == total[name]
    outputs = [row[f"{p}/r/n_observed/r_{j}"] for p in ("train", "val") for j in (0, 1)]
    assert sum(outputs) == total["r"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_one_full_batch_step_matches_the_torch_optimizer(optimizer: str) -> None:
    data = _data(24, 8)
    model = _model()
    reference = copy.deepcopy(model)
    config = _config(
        epochs=1, batch_size=64, optimizer=optimizer, lr=0.05, weight_decay=0.1, momentum=0.0
    )
    Trainer(config).fit(model, data)

    outputs = reference(data.inputs)
    total = sum(
        task.weight
        * task_loss(task, outputs[task.name], *vars(data.labels[task.name]).values()).mean()
        for task in TASKS
    )
    kinds = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    step = kinds[optimizer](reference.parameters(), lr=0.05, weight_decay=0.1)
    step.zero_grad()
    total.backward()
    step.step()
    expected = _params(reference)
    for name, value in _params(model).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_adam_and_adamw_differ_when_weight_decay_is_set() -> None:
    data = _data(24, 8)
    trained = {}
    for optimizer in ("adam", "adamw"):
        model = _model()
        Trainer(_config(epochs=1, optimizer=optimizer, lr=0.05, weight_decay=0.5)).fit(model, data)
        trained[optimizer] = torch.cat([p.flatten() for p in _params(model).values()])
    assert (trained["adam"] - trained["adamw"]).abs().max() > 1e-4


def _step_norm(clip_norm: float | None) -> float:
    """Norm of one plain SGD step (lr 1) on the whole data set."""
    model = _model()
    before = _params(model)
    config = _config(
        epochs=1, batch_size=64, optimizer="sgd", lr=1.0, momentum=0.0, clip_norm=clip_norm
    )
    Trainer(config).fit(model, _data(30, 9))
    after = _params(model)
    return float(torch.cat([(after[k] - before[k]).flatten() for k in before]).norm())


def test_clip_norm_limits_the_gradient_norm() -> None:
    free = _step_norm(None)
    assert free > 0.1
    assert _step_norm(1e-3) == pytest.approx(1e-3, rel=1e-3)
    assert _step_norm(free * 10) == pytest.approx(free, rel=1e-5)


def test_a_custom_loss_of_zero_leaves_its_head_untrained() -> None:
    def zero(task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor):
        return LossTerm(output.sum() * 0.0, observed.sum().float())

    model = _model()
    before = _params(model)
    trainer = Trainer(_config(epochs=2), loss_fns={"c": zero})
    history = trainer.fit(model, _data(40, 10), validation=_data(20, 11))
    after = _params(model)
    assert torch.equal(after["heads.c.weight"], before["heads.c.weight"])
    assert torch.equal(after["heads.c.bias"], before["heads.c.bias"])
    assert not torch.equal(after["heads.b.weight"], before["heads.b.weight"])
    assert history[-1]["train/c/loss"] == 0.0
    assert history[-1]["val/c/loss"] == 0.0


# Early stopping: labels are noise, so the validation loss soon rises and training stops.


def _noise(n: int, seed: int) -> MultiTaskData:
    rng = np.random.default_rng(seed)
    task = (Task(name="t", kind="binary"),)
    return make_data(rng.normal(size=(n, N_FEATURES)), {"t": rng.integers(0, 2, n)}, task)


def _stop(monitor: str, mode: str, patience: int = 3, epochs: int = 60):
    tasks = (Task(name="t", kind="binary"),)
    model = _model(tasks, hidden=(32,))
    stopping = EarlyStopping(monitor=monitor, mode=mode, patience=patience)
    trainer = Trainer(_config(epochs=epochs, lr=0.05, early_stopping=stopping))
    val = _noise(40, 13)
    history = trainer.fit(model, _noise(40, 12), validation=val)
    return history, trainer.evaluate(model, val, prefix="val")


@pytest.mark.parametrize(
    ("monitor", "mode", "pick"),
    [
        ("val/loss", "auto", min),
        ("val/t/loss", "min", min),
        ("val/t/roc_auc", "auto", max),
        ("val/t/roc_auc", "max", max),
        ("val/t/roc_auc", "min", min),
    ],
)
def test_early_stopping_stops_after_patience_and_restores_the_best(
    monitor: str, mode: str, pick
) -> None:
    history, restored = _stop(monitor, mode)
    values = [row[monitor] for row in history]
    best = values.index(pick(values))  # first best: later ties are no improvement
    assert len(history) < 60
    assert len(history) == best + 1 + 3
    assert restored[monitor] == values[best]


def test_early_stopping_on_an_unknown_monitor_raises_listing_keys() -> None:
    with pytest.raises(TaskmaskError, match=r"'val/t/auc' is not in the history.*val/t/roc_auc"):
        _stop("val/t/auc", "auto")


def test_early_stopping_on_validation_without_validation_data_raises() -> None:
    stopping = EarlyStopping(monitor="val/loss")
    with pytest.raises(TaskmaskError, match="no validation data"):
        Trainer(_config(early_stopping=stopping)).fit(_model(), _data(20, 0))


def _regression_stop(monitor: str) -> tuple[list[dict[str, float]], dict[str, float]]:
    tasks = (Task(name="r", kind="regression", n_outputs=2),)
    model = _model(tasks, hidden=(16,))
    stopping = EarlyStopping(monitor=monitor, patience=2)
    trainer = Trainer(_config(epochs=25, lr=0.02, early_stopping=stopping))
    val = _data(40, 15, tasks, missing=0.2)
    history = trainer.fit(model, _data(80, 14, tasks, missing=0.2), validation=val)
    return history, trainer.evaluate(model, val, prefix="val")


def test_early_stopping_auto_mode_minimises_a_macro_error_metric() -> None:
    history, restored = _regression_stop("val/r/mae_macro")
    assert restored["val/r/mae_macro"] == min(row["val/r/mae_macro"] for row in history)


def test_early_stopping_auto_mode_minimises_a_per_label_error_metric() -> None:
    history, restored = _regression_stop("val/r/mae/r_0")
    assert restored["val/r/mae/r_0"] == min(row["val/r/mae/r_0"] for row in history)
