"""Models saved by taskmask 0.1.0 (commit 34e3593) load and predict identically today.

The fixtures come from ``tests/fixtures/make_v010_models.py`` run with the 0.1.0 code: an MLP
model with all four built-in kinds, two heads at a trunk layer and an auxiliary task (left out
of the file), and a 1-D CNN model with a head at a convolutional block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import taskmask
from taskmask.model import raw_outputs

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v010"
MODELS = ("mixed", "cnn")


def _saved(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as saved:
        return {key: saved[key] for key in saved.files}


@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_the_saved_ones(name: str) -> None:
    model = taskmask.load_model(FIXTURES / name)
    saved = _saved(name)
    outputs = raw_outputs(model, torch.from_numpy(saved["inputs"]))
    expected = {k: v for k, v in saved.items() if k != "inputs" and "." not in k}
    assert sorted(outputs) == sorted(expected)
    for task, output in outputs.items():
        torch.testing.assert_close(output, torch.from_numpy(expected[task]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_predictions_decide_the_same(name: str) -> None:
    model = taskmask.load_model(FIXTURES / name)
    saved = _saved(name)
    predictions = taskmask.predict(model, saved["inputs"])
    decided = {
        k.removesuffix(".decisions"): v for k, v in saved.items() if k.endswith(".decisions")
    }
    assert decided and set(decided) <= set(predictions)
    for task, decisions in decided.items():
        np.testing.assert_array_equal(np.asarray(predictions[task].decisions), decisions)


def test_the_auxiliary_head_is_not_in_the_file() -> None:
    model = taskmask.load_model(FIXTURES / "mixed")
    assert "helper" not in model.task_names
    assert {"early", "depth"} == {t.name for t in model.tasks if t.attach_to == "layer1"}
    assert {t.kind for t in model.tasks} == {"binary", "multilabel", "multiclass", "regression"}


@pytest.mark.parametrize("name", MODELS)
def test_fused_heads_give_the_saved_outputs_too(name: str) -> None:
    model = taskmask.load_model(FIXTURES / name)
    saved = _saved(name)
    with model.fused_heads():
        assert model.fused is not None and len(model.fused) > 0
        outputs = raw_outputs(model, torch.from_numpy(saved["inputs"]))
    for task, output in outputs.items():
        torch.testing.assert_close(output, torch.from_numpy(saved[task]), rtol=1e-5, atol=1e-6)
