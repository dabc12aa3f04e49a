"""Prediction: probabilities, decisions by per-label threshold, label and class names, the
documented table columns, auxiliary tasks left out, and F1-tuned thresholds."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm
import torch

from taskmask.api import fit
from taskmask.data import make_data
from taskmask.errors import TaskmaskError
from taskmask.model import MLPConfig, MultiTaskModel
from taskmask.predict import (
    predict,
    predictions_frame,
    raw_outputs,
    tune_thresholds,
    with_thresholds,
)
from taskmask.tasks import Task

SCENE = ("sea", "sunset", "city")
ANIMALS = ("cat", "dog", "owl")
TASKS = (
    Task(name="tox", kind="binary"),
    Task(name="scene", kind="multilabel", labels=SCENE),
    Task(name="animal", kind="multiclass"),
    Task(name="pos", kind="regression", n_outputs=2),
    Task(name="size", kind="regression"),
    Task(name="hint", kind="binary", auxiliary=True),
)


def _raw(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    noisy = x + 0.7 * rng.normal(size=x.shape)  # labels a model can only partly predict
    scene = np.stack([noisy[:, 0] > 0, noisy[:, 1] > -0.5, noisy[:, 2] > 0.8], axis=1)
    labels = {
        "tox": (noisy[:, 0] > 0.3).astype(float),
        "scene": np.where(rng.random(scene.shape) < 0.3, -1.0, scene),
        "animal": np.asarray(ANIMALS, dtype=object)[np.digitize(x[:, 1], [-0.4, 0.4])],
        "pos": x[:, :2] * 2.0,
        "size": x[:, 2],
        "hint": (x[:, 2] > 0).astype(float),
    }
    labels["tox"][rng.random(n) < 0.3] = np.nan
    return x, labels


@pytest.fixture(scope="module")
def trained() -> MultiTaskModel:
    x, labels = _raw(200, 0)
    options = {"epochs": 5, "batch_size": 32, "lr": 1e-2, "progress": False}
    return fit(x, labels, TASKS, trunk=MLPConfig(hidden=(16,)), **options).model


@pytest.fixture
def model(trained: MultiTaskModel) -> MultiTaskModel:
    return copy.deepcopy(trained)  # thresholds are set in place


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return _raw(60, 1)[0]


def test_scores_are_probabilities_from_the_raw_outputs(model, inputs) -> None:
    predictions = predict(model, inputs)
    raw = raw_outputs(model, torch.from_numpy(inputs).float())
    for name in ("tox", "scene"):
        scores = predictions[name].scores
        assert ((scores >= 0) & (scores <= 1)).all()
        np.testing.assert_allclose(scores, torch.sigmoid(raw[name]).numpy(), rtol=1e-6)
    probs = predictions["animal"].scores
    assert probs.shape == (60, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs, torch.softmax(raw["animal"], dim=1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(predictions["pos"].scores, raw["pos"].numpy())
    assert predictions["pos"].decisions is None and predictions["pos"].names is None


def test_auxiliary_tasks_are_never_predicted(model, inputs) -> None:
    predictions = predict(model, inputs)
    assert set(predictions) == {"tox", "scene", "animal", "pos", "size"}
    assert "hint" in raw_outputs(model, torch.from_numpy(inputs).float())
    assert not any(column.startswith("hint") for column in predictions_frame(predictions))


def test_decisions_use_per_label_thresholds(model, inputs) -> None:
    default = predict(model, inputs)
    with_thresholds(model, {"scene": [0.2, 0.5, 0.8], "tox": 0.7})
    assert model.task("scene").thresholds() == (0.2, 0.5, 0.8)
    assert model.task("tox").thresholds() == (0.7,)
    tuned = predict(model, inputs)
    for name, thresholds in (("scene", [0.2, 0.5, 0.8]), ("tox", [0.7])):
        scores = tuned[name].scores
        np.testing.assert_array_equal(tuned[name].decisions, scores >= np.asarray(thresholds))
    assert (tuned["scene"].decisions != default["scene"].decisions).any()


def test_thresholds_are_validated(model) -> None:
    with pytest.raises(TaskmaskError, match="task 'scene': 2 thresholds for 3 labels"):
        with_thresholds(model, {"scene": [0.2, 0.3]})
    with pytest.raises(TaskmaskError, match=r"unknown tasks \['nope'\]"):
        with_thresholds(model, {"nope": 0.5})
    assert model.task("scene").thresholds() == (0.5, 0.5, 0.5)


def test_multilabel_names_list_the_predicted_labels(model, inputs) -> None:
    with_thresholds(model, {"scene": [0.3, 0.5, 0.6]})
    prediction = predict(model, inputs)["scene"]
    assert prediction.decisions is not None and prediction.names is not None
    for row, names in zip(prediction.decisions, prediction.names, strict=True):
        assert names == [label for label, on in zip(SCENE, row, strict=True) if on]
    assert max(len(names) for names in prediction.names) >= 2
    assert min(len(names) for names in prediction.names) <= 1


def test_multiclass_names_are_the_argmax_class(model, inputs) -> None:
    prediction = predict(model, inputs)["animal"]
    index = prediction.scores.argmax(axis=1)
    np.testing.assert_array_equal(prediction.decisions, index)
    assert prediction.names == [ANIMALS[i] for i in index]
    assert len(set(prediction.names)) >= 2


def test_predictions_frame_has_the_documented_columns(model, inputs) -> None:
    predictions = predict(model, inputs)
    frame = predictions_frame(predictions)
    expected = [
        "tox.prob",
        "tox.pred",
        *(f"scene.prob.{label}" for label in SCENE),
        *(f"scene.pred.{label}" for label in SCENE),
        "scene.labels",
        *(f"animal.prob.{name}" for name in ANIMALS),
        "animal.pred",
        "pos.value.pos_0",
        "pos.value.pos_1",
        "size.value",
    ]
    assert sorted(frame.columns) == sorted(expected)
    assert len(frame) == len(inputs)
    scene = predictions["scene"]
    assert frame["scene.labels"].tolist() == [";".join(names) for names in scene.names]
    np.testing.assert_array_equal(frame["scene.pred.city"], scene.decisions[:, 2].astype(int))
    np.testing.assert_array_equal(frame["tox.pred"], predictions["tox"].decisions[:, 0])
    assert frame["animal.pred"].tolist() == predictions["animal"].names
    np.testing.assert_array_equal(frame["pos.value.pos_1"], predictions["pos"].scores[:, 1])
    np.testing.assert_array_equal(frame["size.value"], predictions["size"].scores[:, 0])


def test_tables_and_arrays_predict_the_same_in_any_chunking(model, inputs) -> None:
    frame = pd.DataFrame(inputs, columns=["a", "b", "c"])
    whole, chunked = predict(model, inputs), predict(model, frame, batch_size=7)
    for name, prediction in whole.items():
        # chunks of another size may take another matmul kernel: float rounding only
        np.testing.assert_allclose(chunked[name].scores, prediction.scores, rtol=1e-5, atol=1e-6)


def test_raw_outputs_keeps_the_training_mode(model, inputs) -> None:
    model.train()
    raw_outputs(model, torch.from_numpy(inputs).float())
    assert model.training
    model.eval()
    raw_outputs(model, torch.from_numpy(inputs).float())
    assert not model.training


def _f1(probs: np.ndarray, target: np.ndarray, observed: np.ndarray, threshold: float) -> float:
    pred = probs[observed] >= threshold
    return float(skm.f1_score(target[observed], pred, zero_division=0.0))


def test_tuned_thresholds_give_at_least_the_f1_of_one_half(model) -> None:
    x, labels = _raw(150, 2)
    data = make_data(x, labels, model.tasks)
    tune_thresholds(model, data)
    raw = raw_outputs(model, data.inputs)
    gained = 0.0
    for name in ("tox", "scene"):
        thresholds = model.task(name).threshold
        assert isinstance(thresholds, tuple) and len(thresholds) == model.task(name).width
        probs = torch.sigmoid(raw[name]).numpy()
        target = data.labels[name].target.numpy()
        observed = data.labels[name].observed.numpy()
        for j, threshold in enumerate(thresholds):
            args = (probs[:, j], target[:, j], observed[:, j])
            tuned, half = _f1(*args, threshold), _f1(*args, 0.5)
            assert tuned >= half
            gained += tuned - half
    assert gained > 0.0  # the tuning did something on these noisy labels
    assert model.task("animal").threshold == 0.5
