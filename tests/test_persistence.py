"""Saving and loading: a loaded model predicts exactly as the saved one, bad files are named,
nothing is unpickled, and writing is atomic."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import taskmask.persistence as persistence
from taskmask.api import fit
from taskmask.errors import TaskmaskError
from taskmask.model import MLPConfig, MultiTaskModel, raw_outputs
from taskmask.persistence import META_FILE, WEIGHTS_FILE, load_model, save_model
from taskmask.predict import with_thresholds
from taskmask.tasks import Task

SCENE = ("sea", "sunset")
TASKS = (
    Task(name="tox", kind="binary", attach_to="layer1"),
    Task(name="scene", kind="multilabel", labels=SCENE),
    Task(name="animal", kind="multiclass"),
    Task(name="pos", kind="regression", n_outputs=2, attach_to="layer2.0"),
    Task(name="hint", kind="binary", auxiliary=True, attach_to="layer1"),
)
FEATURES = ["age", "dose", "weight"]
OPTIONS = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "progress": False}


def _raw(n: int, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=[40.0, 2.0, 70.0], scale=[10.0, 1.0, 15.0], size=(n, 3))
    z = (x - [40.0, 2.0, 70.0]) / [10.0, 1.0, 15.0]
    labels = {
        "tox": np.where(rng.random(n) < 0.3, -1.0, z[:, 0] > 0),
        "scene": np.stack([z[:, 1] > 0, z[:, 2] > 0], axis=1).astype(float),
        "animal": np.asarray(["cat", "dog"], dtype=object)[(z[:, 2] > 0).astype(int)],
        "pos": z[:, :2],
        "hint": (z[:, 1] > 0).astype(float),
    }
    return pd.DataFrame(x, columns=FEATURES), labels


@pytest.fixture(scope="module")
def trained() -> MultiTaskModel:
    frame, labels = _raw(80, 0)
    trunk = MLPConfig(hidden=(8, 6), norm="batch", dropout=0.1)
    model = fit(frame, labels, TASKS, trunk=trunk, **OPTIONS).model
    return with_thresholds(model, {"tox": 0.3, "scene": [0.2, 0.7]})


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.tensor(_raw(30, 1)[0].to_numpy(), dtype=torch.float32)


@pytest.fixture
def saved(trained: MultiTaskModel, tmp_path: Path) -> Path:
    return save_model(trained, tmp_path / "model")


def _same_outputs(first: MultiTaskModel, second: MultiTaskModel, inputs: torch.Tensor) -> None:
    one, two = raw_outputs(first, inputs), raw_outputs(second, inputs)
    for name in second.task_names:
        assert torch.equal(one[name], two[name]), name


def test_a_loaded_model_predicts_exactly_as_the_saved_one(trained, saved, inputs) -> None:
    loaded = load_model(saved)
    assert not loaded.training
    _same_outputs(trained, loaded, inputs)
    assert loaded.feature_names == tuple(FEATURES)
    assert loaded.input_shape == (3,)
    assert torch.equal(loaded.input_mean, trained.input_mean)
    assert torch.equal(loaded.input_scale, trained.input_scale)
    assert not torch.equal(loaded.input_mean, torch.zeros(1, 3))  # really standardised
    assert loaded.trunk.config == trained.trunk.config
    assert loaded.heads["tox"].in_features == 8  # attached to layer1 again
    assert loaded.heads["pos"].in_features == 6


def test_a_loaded_model_keeps_thresholds_and_class_names(trained, saved) -> None:
    loaded = load_model(saved)
    assert loaded.tasks == tuple(t for t in trained.tasks if not t.auxiliary)
    assert loaded.task("tox").thresholds() == (0.3,)
    assert loaded.task("scene").thresholds() == (0.2, 0.7)
    assert loaded.task("animal").labels == ("cat", "dog")
    assert loaded.task("pos").output_names == ("pos_0", "pos_1")


def test_auxiliary_heads_are_neither_saved_nor_loaded(trained, saved) -> None:
    with safe_open(str(saved / WEIGHTS_FILE), framework="pt") as file:
        keys = set(file.keys())
    assert "heads.tox.weight" in keys
    assert not any(key.startswith("heads.hint.") for key in keys)
    meta = json.loads((saved / META_FILE).read_text())
    assert [t["name"] for t in meta["tasks"]] == ["tox", "scene", "animal", "pos"]
    loaded = load_model(saved)
    assert "hint" not in loaded.task_names
    assert "hint" not in loaded.heads
    assert "hint" in trained.heads  # saving left the trained model alone


def _user_trunk() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU())


def test_a_user_trunk_must_be_passed_again(tmp_path, inputs) -> None:
    frame, labels = _raw(40, 2)
    tasks = [Task(name="tox", kind="binary", attach_to="1"), Task(name="pos", kind="regression")]
    subset = {"tox": labels["tox"], "pos": labels["pos"][:, 0]}
    model = fit(frame, subset, tasks, trunk=_user_trunk(), **OPTIONS).model
    path = save_model(model, tmp_path / "user")
    with pytest.raises(TaskmaskError, match=r"model\.json: the model has a user-defined trunk"):
        load_model(path)
    loaded = load_model(path, trunk=_user_trunk())
    _same_outputs(model, loaded, inputs)
    assert torch.equal(loaded.trunk[0].weight, model.trunk[0].weight)  # from the file


def _rewrite_meta(path: Path, change) -> None:
    meta = json.loads((path / META_FILE).read_text())
    change(meta)
    (path / META_FILE).write_text(json.dumps(meta))


def _drop(key: str):
    return lambda meta: meta.pop(key)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda path: (path / META_FILE).write_text("{not json"), id="bad-json"),
        pytest.param(lambda path: (path / META_FILE).write_bytes(b"\xff\xfe\x00"), id="binary"),
        pytest.param(lambda path: (path / META_FILE).write_text("[1, 2]"), id="not-an-object"),
        pytest.param(lambda path: _rewrite_meta(path, _drop("tasks")), id="no-tasks-key"),
        pytest.param(lambda path: _rewrite_meta(path, _drop("input_shape")), id="no-shape-key"),
        pytest.param(
            lambda path: _rewrite_meta(path, lambda m: m.update(format_version=2)), id="version"
        ),
        pytest.param(
            lambda path: _rewrite_meta(path, lambda m: m.update(surprise=1)), id="unknown-key"
        ),
        pytest.param(
            lambda path: _rewrite_meta(path, lambda m: m["tasks"][0].update(kind="ordinal")),
            id="bad-task",
        ),
        pytest.param(lambda path: (path / META_FILE).unlink(), id="missing"),
    ],
)
def test_a_bad_model_json_raises_naming_the_file(saved, corrupt) -> None:
    corrupt(saved)
    with pytest.raises(TaskmaskError) as info:
        load_model(saved)
    assert str(saved / META_FILE) in str(info.value)


def _meta_case(change, id: str):
    return pytest.param(change, id=id)


@pytest.mark.parametrize(
    "change",
    [
        _meta_case(lambda m: m.update(feature_names=["age"]), "feature-name-count"),
        _meta_case(lambda m: m["tasks"][0].update(attach_to="layer9"), "unknown-layer"),
        _meta_case(lambda m: m["trunk"].update(hidden=[0, 6]), "zero-width"),
        _meta_case(lambda m: m.update(input_shape=[3, 1], feature_names=None), "2d-input"),
        _meta_case(lambda m: m["tasks"][1].update(threshold=[0.5]), "threshold-count"),
    ],
)
def test_an_impossible_model_json_raises_naming_the_file(saved, change) -> None:
    _rewrite_meta(saved, change)
    with pytest.raises(TaskmaskError) as info:
        load_model(saved)
    assert str(saved / META_FILE) in str(info.value)


def _truncate(path: Path) -> None:
    data = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])


def _reshaped(path: Path) -> None:
    state = _state(path)
    state["heads.tox.weight"] = torch.zeros(1, 9)
    save_file(state, str(path / WEIGHTS_FILE))


def _state(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118


def _without(key: str):
    def change(path: Path) -> None:
        state = _state(path)
        del state[key]
        save_file(state, str(path / WEIGHTS_FILE))

    return change


def _with_extra(path: Path) -> None:
    save_file({**_state(path), "heads.ghost.weight": torch.zeros(1, 6)}, str(path / WEIGHTS_FILE))


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(_truncate, id="truncated"),
        pytest.param(lambda p: (p / WEIGHTS_FILE).write_bytes(os.urandom(300)), id="garbage"),
        pytest.param(lambda p: (p / WEIGHTS_FILE).write_bytes(b""), id="empty"),
        pytest.param(lambda p: (p / WEIGHTS_FILE).unlink(), id="missing"),
        pytest.param(_reshaped, id="wrong-shape"),
        pytest.param(_without("trunk.layer1.0.weight"), id="missing-tensor"),
        pytest.param(_without("trunk.layer1.1.running_mean"), id="missing-buffer"),
        pytest.param(_with_extra, id="extra-tensor"),
        pytest.param(
            lambda p: _rewrite_meta(p, lambda m: m["trunk"].update(hidden=[8, 7])),
            id="json-describes-other-shapes",
        ),
    ],
)
def test_bad_weights_raise_naming_the_file(saved, corrupt) -> None:
    corrupt(saved)
    with pytest.raises(TaskmaskError) as info:
        load_model(saved)
    assert str(saved / WEIGHTS_FILE) in str(info.value)


SPRUNG: list[str] = []


def _spring() -> dict[str, str]:
    SPRUNG.append("unpickled")
    return {}


class _Trap:
    def __reduce__(self):
        return (_spring, ())


def test_loading_never_unpickles(saved) -> None:
    torch.save({"trunk.layer1.0.weight": torch.zeros(8, 3), "trap": _Trap()}, saved / WEIGHTS_FILE)
    with pytest.raises(TaskmaskError, match=r"model\.safetensors: not a readable safetensors"):
        load_model(saved)
    assert SPRUNG == []


def test_saving_over_a_model_replaces_it_and_leaves_nothing_beside(trained, tmp_path, inputs):
    target = tmp_path / "model"
    save_model(trained, target)
    (target / "stray.txt").write_text("from the old directory")
    other = copy.deepcopy(trained)
    with torch.no_grad():
        other.heads["tox"].bias.add_(1.0)
    save_model(other, target)
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert sorted(os.listdir(target)) == sorted([META_FILE, WEIGHTS_FILE])
    loaded = load_model(target)
    _same_outputs(other, loaded, inputs)
    assert not torch.equal(loaded.heads["tox"].bias, trained.heads["tox"].bias)


def _failing_save_file(state, filename: str) -> None:
    Path(filename).write_bytes(b"half a file")
    raise OSError("disk full")


def test_a_failed_write_leaves_no_target_and_no_temporary_directory(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(persistence, "save_file", _failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_model(trained, tmp_path / "model")
    assert os.listdir(tmp_path) == []


def test_a_failed_overwrite_keeps_the_old_model(trained, tmp_path, monkeypatch, inputs):
    target = save_model(trained, tmp_path / "model")
    before = {name: (target / name).read_bytes() for name in (META_FILE, WEIGHTS_FILE)}
    monkeypatch.setattr(persistence, "save_file", _failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_model(trained, target)
    assert os.listdir(tmp_path) == ["model"]
    assert {name: (target / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    _same_outputs(trained, load_model(target), inputs)


def test_a_saved_model_directory_has_the_usual_permissions(trained, tmp_path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    target = save_model(trained, tmp_path / "model")
    assert oct(target.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777)
