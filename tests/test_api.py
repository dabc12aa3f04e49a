"""`fit` and `evaluate`: repeatable runs, missing labels invisible to training whatever they
hold, all four task kinds learning together, resolved pos_weight, user trunks, attached heads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from taskmask.api import evaluate, fit, holdout
from taskmask.errors import TaskmaskError
from taskmask.functional import LossTerm
from taskmask.model import MLPConfig, MLPTrunk
from taskmask.tasks import Task, task_metrics
from taskmask.training import EarlyStopping

N_FEATURES = 4
SCENE = ("sea", "sunset", "city")
ANIMALS = ("cat", "dog", "owl")
TASKS = (
    Task(name="tox", kind="binary"),
    Task(name="scene", kind="multilabel", labels=SCENE),
    Task(name="animal", kind="multiclass"),
    Task(name="pos", kind="regression", n_outputs=2),
)
SMALL = {"trunk": MLPConfig(hidden=(16,)), "epochs": 3, "batch_size": 32, "progress": False}


def _raw(n: int, seed: int, missing: float = 0.3) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Features and raw labels following simple rules; missing labels as each kind's usual
    marker (-1 for binary / multilabel, None for class names, NaN for regression)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    tox = (x[:, 0] > 0).astype(np.float64)
    scene = np.stack([x[:, 1] > 0, x[:, 2] > 0, x[:, 0] + x[:, 1] > 0], axis=1).astype(float)
    animal = np.asarray(ANIMALS, dtype=object)[np.digitize(x[:, 3], [-0.45, 0.45])]
    pos = np.stack([x[:, 0] + x[:, 1], x[:, 2] - x[:, 3]], axis=1)
    tox[rng.random(n) < missing] = -1
    scene[rng.random(scene.shape) < missing] = -1
    animal[rng.random(n) < missing] = None
    pos[rng.random(pos.shape) < missing] = np.nan
    return x.astype(np.float32), {"tox": tox, "scene": scene, "animal": animal, "pos": pos}


def _fit(x: np.ndarray, labels: dict[str, np.ndarray], **options: object):
    return fit(x, labels, TASKS, **{**SMALL, **options})


def _assert_same_model(first, second) -> None:
    assert first.model.tasks == second.model.tasks
    one, two = first.model.state_dict(), second.model.state_dict()
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key
    pd.testing.assert_frame_equal(
        first.history.drop(columns="seconds"), second.history.drop(columns="seconds")
    )


def test_the_same_seed_gives_bit_identical_weights_and_history() -> None:
    x, labels = _raw(120, 0)
    options = {"seed": 7, "validation_split": 0.25, "trunk": MLPConfig(hidden=(16,), dropout=0.2)}
    first, second = _fit(x, labels, **options), _fit(x, labels, **options)
    _assert_same_model(first, second)
    assert "val/tox/loss" in first.history


def test_a_different_seed_gives_different_weights() -> None:
    x, labels = _raw(120, 0)
    first, second = _fit(x, labels, seed=1), _fit(x, labels, seed=2)
    assert not torch.equal(first.model.heads["tox"].weight, second.model.heads["tox"].weight)


def _with_markers(labels: dict[str, np.ndarray], markers: dict[str, object]) -> dict:
    """The same labels with each task's missing entries written as ``markers[task]``."""
    out = {}
    for name, raw in labels.items():
        if name == "animal":
            gone = np.asarray([v is None for v in raw])
        elif name == "pos":
            gone = np.isnan(raw)
        else:
            gone = raw == -1
        array = np.asarray(raw, dtype=object).copy()
        array[gone] = markers[name]
        out[name] = array
    return out


@pytest.mark.parametrize(
    "markers",
    [
        {"tox": np.nan, "scene": np.nan, "animal": np.nan, "pos": None},
        {"tox": None, "scene": "", "animal": "", "pos": "  "},
        {"tox": "", "scene": None, "animal": None, "pos": ""},
        {"tox": -1, "scene": -1, "animal": -1, "pos": np.nan},
    ],
)
def test_what_a_missing_label_holds_changes_no_weight(markers: dict[str, object]) -> None:
    x, labels = _raw(100, 1)
    options = {"seed": 3, "validation_split": 0.2}
    _assert_same_model(
        _fit(x, labels, **options), _fit(x, _with_markers(labels, markers), **options)
    )


def test_a_task_with_no_observed_training_label_raises_naming_it() -> None:
    x, labels = _raw(40, 2)
    labels["tox"][:] = -1
    with pytest.raises(TaskmaskError, match=r"\['tox'\] have no observed label"):
        _fit(x, labels)


def test_mixed_tasks_with_missing_labels_learn_simple_rules() -> None:
    x, labels = _raw(500, 3)
    x_test, labels_test = _raw(300, 4)
    result = _fit(x, labels, epochs=40, lr=1e-2, trunk=MLPConfig(hidden=(32,)), train_metrics=False)
    scores = evaluate(result.model, x_test, labels_test)
    assert result.model.task("animal").labels == ANIMALS
    assert scores["tox"]["roc_auc"] > 0.95
    assert scores["scene"]["roc_auc_macro"] > 0.95
    assert scores["animal"]["accuracy"] > 0.85
    assert scores["pos"]["r2_macro"] > 0.9
    assert scores["pos"]["n_observed/pos_0"] == float(np.isfinite(labels_test["pos"][:, 0]).sum())


def _ratio(raw: np.ndarray) -> list[float]:
    """Negatives / positives per label; a missing (-1) label counts as neither."""
    columns = raw.reshape(len(raw), -1).T
    return [float((col == 0).sum() / (col == 1).sum()) for col in columns]


@pytest.mark.parametrize("validation_split", [0.0, 0.3])
def test_balanced_pos_weight_is_resolved_on_observed_training_labels(
    validation_split: float,
) -> None:
    x, labels = _raw(90, 5, missing=0.4)
    rng = np.random.default_rng(0)
    labels["tox"] = np.where(
        labels["tox"] == 1, (rng.random(90) < 0.3).astype(float), labels["tox"]
    )
    tasks = [
        Task(name="tox", kind="binary", pos_weight="balanced"),
        Task(name="scene", kind="multilabel", labels=SCENE, pos_weight="balanced"),
    ]
    subset = {k: labels[k] for k in ("tox", "scene")}
    options = {**SMALL, "epochs": 1, "validation_split": validation_split}
    result = fit(x, subset, tasks, **options)
    rows = np.arange(90)
    if validation_split:
        order = torch.randperm(90, generator=torch.Generator().manual_seed(0)).numpy()
        rows = order[round(90 * validation_split) :]
    tox, scene = result.model.task("tox"), result.model.task("scene")
    assert tox.pos_weight == pytest.approx(_ratio(labels["tox"][rows]), rel=1e-6)
    assert scene.pos_weight == pytest.approx(_ratio(labels["scene"][rows]), rel=1e-6)
    assert isinstance(scene.pos_weight, tuple) and len(scene.pos_weight) == 3


def test_a_user_trunk_trains_and_heads_attach_to_its_layers() -> None:
    x, labels = _raw(300, 6)
    trunk = nn.Sequential(nn.Linear(N_FEATURES, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh())
    tasks = [Task(name="tox", kind="binary", attach_to="1"), Task(name="pos", kind="regression")]
    subset = {"tox": labels["tox"], "pos": labels["pos"]}
    result = fit(x, subset, tasks, trunk=trunk, epochs=10, batch_size=32, lr=1e-2, progress=False)
    assert result.model.trunk is trunk
    assert result.model.heads["tox"].in_features == 16
    assert result.model.heads["pos"].in_features == 8
    history = result.history
    assert history["train/tox/loss"].iloc[-1] < 0.5 * history["train/tox/loss"].iloc[0]
    assert history["train/tox/roc_auc"].iloc[-1] > 0.9


def test_a_head_attached_to_layer1_trains_layer1_only() -> None:
    x, labels = _raw(100, 7)
    config = MLPConfig(hidden=(16, 8))
    tasks = [
        Task(name="tox", kind="binary", attach_to="layer1"),
        Task(name="pos", kind="regression"),
    ]

    def zero(task: Task, output: torch.Tensor, target: torch.Tensor, observed: torch.Tensor):
        return LossTerm(output.sum() * 0.0, observed.sum().float())

    subset = {"tox": labels["tox"], "pos": labels["pos"]}
    result = fit(
        x, subset, tasks, trunk=config, loss_fns={"pos": zero}, epochs=2, seed=4, progress=False
    )
    torch.manual_seed(4)  # fit seeds the same way before building the trunk
    initial = MLPTrunk(N_FEATURES, config).state_dict()
    trained = result.model.trunk.state_dict()
    assert result.model.heads["tox"].in_features == 16
    assert not torch.equal(trained["layer1.0.weight"], initial["layer1.0.weight"])
    assert torch.equal(trained["layer2.0.weight"], initial["layer2.0.weight"])
    assert torch.equal(trained["layer2.0.bias"], initial["layer2.0.bias"])
    assert (result.history["train/pos/loss"] == 0.0).all()


def test_validation_data_and_split_fill_the_validation_rows() -> None:
    x, labels = _raw(100, 8)
    x_val, labels_val = _raw(50, 9)
    given = _fit(x, labels, validation=(x_val, labels_val))
    assert given.history["val/tox/n_observed"].iloc[0] == float((labels_val["tox"] != -1).sum())
    held = _fit(x, labels, validation_split=0.2).history.iloc[0]
    total = float((labels["tox"] != -1).sum())
    assert 0 < held["val/tox/n_observed"] < total
    assert held["val/tox/n_observed"] + held["train/tox/n_observed"] == total


def test_inputs_are_standardised_on_training_rows_and_frames_name_features() -> None:
    x, labels = _raw(60, 10)
    frame = pd.DataFrame(x.astype(np.float64), columns=["a", "b", "c", "d"])
    frame["d"] = 3.0  # constant: scale 1
    result = _fit(frame, labels, epochs=1)
    values = frame.to_numpy()
    assert result.model.feature_names == ("a", "b", "c", "d")
    torch.testing.assert_close(
        result.model.input_mean[0], torch.tensor(values.mean(0), dtype=torch.float32)
    )
    expected_scale = values.std(0)
    expected_scale[3] = 1.0
    torch.testing.assert_close(
        result.model.input_scale[0], torch.tensor(expected_scale, dtype=torch.float32)
    )
    unscaled = _fit(x, labels, epochs=1, standardize=False).model
    assert torch.equal(unscaled.input_mean, torch.zeros(1, N_FEATURES))
    assert torch.equal(unscaled.input_scale, torch.ones(1, N_FEATURES))


def test_evaluate_counts_observed_labels_only_and_skips_auxiliary_tasks() -> None:
    x, labels = _raw(80, 11)
    tasks = [*TASKS[:3], Task(name="pos", kind="regression", n_outputs=2, auxiliary=True)]
    model = fit(x, labels, tasks, **SMALL).model
    scores = evaluate(
        model, x, {"tox": labels["tox"], "animal": labels["animal"], "pos": labels["pos"]}
    )
    assert set(scores) == {"tox", "animal"}
    seen = labels["tox"] != -1
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x))["tox"]
    expected = task_metrics(
        model.task("tox"),
        logits[torch.from_numpy(seen)],
        torch.from_numpy(labels["tox"][seen, None].astype(np.float32)),
        torch.ones(int(seen.sum()), 1, dtype=torch.bool),
    )
    assert scores["tox"]["n_observed"] == float(seen.sum())
    for key in ("roc_auc", "f1", "accuracy"):
        assert scores["tox"][key] == pytest.approx(expected[key], abs=1e-12)


def test_nested_settings_are_validated_into_models() -> None:
    x, labels = _raw(60, 12)
    result = _fit(
        x,
        labels,
        epochs=30,
        validation_split=0.25,
        early_stopping={"monitor": "val/loss", "patience": 1},
        lr="0.5",
    )
    config = result.trainer.config
    assert isinstance(config.early_stopping, EarlyStopping)
    assert config.early_stopping.patience == 1
    assert config.lr == 0.5


def test_an_unknown_setting_raises() -> None:
    x, labels = _raw(30, 13)
    with pytest.raises(ValueError, match="epoch"):
        _fit(x, labels, epoch=2)


def test_holdout_is_the_split_fit_makes_and_rejects_a_bad_fraction() -> None:
    kept, held = holdout(40, 0.25, seed=5)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(5))
    assert held.tolist() == order[:10].tolist() and kept.tolist() == order[10:].tolist()
    assert sorted(kept.tolist() + held.tolist()) == list(range(40))
    with pytest.raises(TaskmaskError, match=r"validation fraction must be in \(0, 1\), got 1.0"):
        holdout(40, 1.0, seed=5)
