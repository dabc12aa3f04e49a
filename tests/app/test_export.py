"""``taskmask export``: ONNX (checked against onnxruntime to 1e-5) and TorchScript files whose
named outputs are `taskmask.predict`'s probabilities, with thresholds and labels as metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import Trained, run_cli, trained
from training_script import model

from taskmask.app.export import METADATA_KEY, export_model, metadata
from taskmask.errors import TaskmaskError
from taskmask.model import MLPConfig, MLPTrunk, MultiTaskModel
from taskmask.persistence import load_model
from taskmask.predict import predict
from taskmask.tasks import Task

__all__ = ["trained"]

# torch >= 2.10 deprecates TorchScript in favour of torch.export; its files still load
LOADS_TORCHSCRIPT = pytest.mark.filterwarnings(
    "ignore:`torch.jit.load` is deprecated:DeprecationWarning"
)


def _inputs(n_rows: int, n_features: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n_rows, n_features)).astype(np.float32)


def _expected(net: MultiTaskModel, x: np.ndarray) -> dict[str, np.ndarray]:
    return {name: p.scores for name, p in predict(net, x).items()}


def _attached() -> MultiTaskModel:
    """Standardised inputs and a head on an inner trunk layer, thresholds of their own."""
    torch.manual_seed(0)
    tasks = [
        Task(name="tox", kind="binary", threshold=0.3),
        Task(name="scene", kind="multilabel", labels=("sea", "sun"), threshold=(0.4, 0.6)),
        Task(name="colour", kind="multiclass", labels=("r", "g", "b"), attach_to="layer1"),
        Task(name="age", kind="regression"),
    ]
    trunk = MLPTrunk(5, MLPConfig(hidden=(8, 6)))
    mean, scale = torch.arange(5.0), torch.full((5,), 2.0)
    return MultiTaskModel(trunk, tasks, (5,), input_mean=mean, input_scale=scale)


@pytest.mark.parametrize("make", [model, _attached], ids=["plain", "attached-standardised"])
def test_onnx_outputs_equal_predict_to_1e5(tmp_path: Path, make) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    net = make()
    path = export_model(net, tmp_path / "m.onnx", format="onnx")
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == list(net.task_names)
    x = _inputs(37, net.input_shape[0])  # another batch size than the export's example
    got = dict(zip(net.task_names, session.run(None, {"input": x}), strict=True))
    for name, expected in _expected(net, x).items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props[METADATA_KEY]) == metadata(net)


@LOADS_TORCHSCRIPT
def test_torchscript_outputs_equal_predict(tmp_path: Path) -> None:
    net = _attached()
    path = export_model(net, tmp_path / "m.torchscript", format="torchscript")
    extra = {METADATA_KEY: ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    x = _inputs(11, 5)
    outputs = loaded(torch.from_numpy(x))
    for (name, expected), got in zip(_expected(net, x).items(), outputs, strict=True):
        np.testing.assert_allclose(
            got.detach().numpy(), expected, rtol=1e-6, atol=1e-6, err_msg=name
        )
    assert json.loads(extra[METADATA_KEY]) == metadata(net)


def test_the_metadata_names_labels_and_thresholds() -> None:
    meta = metadata(_attached())
    assert meta["input_shape"] == [5]
    assert meta["tasks"] == [
        {"name": "tox", "kind": "binary", "outputs": ["tox"], "thresholds": [0.3]},
        {
            "name": "scene",
            "kind": "multilabel",
            "outputs": ["sea", "sun"],
            "thresholds": [0.4, 0.6],
        },
        {"name": "colour", "kind": "multiclass", "outputs": ["r", "g", "b"]},
        {"name": "age", "kind": "regression", "outputs": ["age"]},
    ]


def test_the_exported_model_is_a_copy(tmp_path: Path) -> None:
    net = model()
    net.train()
    export_model(net, tmp_path / "m.torchscript", format="torchscript")
    assert net.training  # still in training mode, on its device


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskmaskError, match="unknown export format 'tflite'"):
        export_model(model(), tmp_path / "m", format="tflite")  # type: ignore[arg-type]


@LOADS_TORCHSCRIPT
def test_the_cli_exports_a_run(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "served.torchscript"
    code, stdout, err = run_cli(
        capsys, "export", trained.run, "--format", "torchscript", "--out", out
    )
    assert (code, stdout, err) == (0, "", f"wrote {out}\n")
    net = load_model(trained.run)
    x = _inputs(5, 3)
    outputs = torch.jit.load(str(out))(torch.from_numpy(x))
    for (name, expected), got in zip(_expected(net, x).items(), outputs, strict=True):
        np.testing.assert_allclose(
            got.detach().numpy(), expected, rtol=1e-6, atol=1e-6, err_msg=name
        )
    code, _, err = run_cli(capsys, "export", tmp_path / "nope")
    assert code == 2 and "model.json" in err
