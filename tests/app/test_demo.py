"""The seed-000 demo: its data, its seed loss against a NumPy port of Keras, and a smoke run."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from taskmask.app.demo import (
    LABELS,
    VARIANTS,
    fill_missing_as_negative,
    format_table,
    make_seed_data,
    missing_rows,
    run,
    seed_loss,
)
from taskmask.tasks import Task

TASK = Task(name="y", kind="multilabel", labels=LABELS)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _keras_categorical_crossentropy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """keras.backend.categorical_crossentropy(from_logits=False), per row, in NumPy."""
    y_pred = y_pred / y_pred.sum(axis=-1, keepdims=True)
    y_pred = np.clip(y_pred, 1e-7, 1 - 1e-7)
    return -(y_true * np.log(y_pred)).sum(axis=-1)


def _seed_masked_loss(y_true: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The seed's ``masked_loss_function`` with its sigmoid outputs, labels -1 where missing."""
    mask = (y_true != -1).astype(np.float64)
    y_pred = 1.0 / (1.0 + np.exp(-logits))
    return _keras_categorical_crossentropy(y_true * mask, y_pred * mask)


def _encoded(y_raw: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    observed = torch.from_numpy(y_raw != -1)
    return torch.from_numpy(np.where(y_raw == -1, 0.0, y_raw)), observed


@pytest.mark.parametrize("n_samples", [100_000, 1_000, 4_321])
def test_make_seed_data_masks_exactly_the_documented_rows(n_samples):
    x, y = make_seed_data(3, n_samples=n_samples)
    assert x.shape == (n_samples, 2) and y.shape == (n_samples, 3)
    assert ((x >= 0) & (x < 1)).all()
    expected = np.stack([x[:, 1] <= 0.5, x[:, 0] >= 0.5, x[:, 0] + x[:, 1] > 1], axis=1)
    percent = {"y0": ("0", "2.0"), "y1": ("1.8", "2.5"), "y2": ("2.4", "3.5")}
    for j, label in enumerate(LABELS):
        # exact rational arithmetic: the seed's int(N * 0.018) is 1799 for N = 100,000
        start, stop = (math.floor(n_samples * Fraction(p) / 100) for p in percent[label])
        assert missing_rows(n_samples)[label] == (start, stop)
        missing = np.zeros(n_samples, dtype=bool)
        missing[start:stop] = True
        assert np.array_equal(y[:, j] == -1, missing)
        assert np.array_equal(y[~missing, j], expected[~missing, j].astype(float))
    assert missing_rows() == {"y0": (0, 2000), "y1": (1800, 2500), "y2": (2400, 3500)}


def test_make_seed_data_is_seeded():
    x0, y0 = make_seed_data(0, n_samples=500)
    x1, y1 = make_seed_data(0, n_samples=500)
    assert np.array_equal(x0, x1) and np.array_equal(y0, y1)
    assert not np.array_equal(x0, make_seed_data(1, n_samples=500)[0])


def test_seed_loss_matches_numpy_keras_on_a_hand_case():
    y_raw = np.array(
        [
            [1.0, 0.0, 1.0],
            [-1.0, 1.0, 0.0],
            [0.0, -1.0, -1.0],  # only negatives observed: the seed's loss is 0
            [1.0, 1.0, -1.0],
            [0.0, 1.0, 0.0],  # p(y1) / sum(p) < 1e-7: clipped
        ]
    )
    logits = np.array(
        [
            [2.0, -1.0, 0.5],
            [7.0, 0.3, -2.0],
            [-1.0, 4.0, 1.0],
            [0.2, -0.7, 9.0],
            [10.0, -20.0, 3.0],
        ]
    )
    target, observed = _encoded(y_raw)
    term = seed_loss(TASK, torch.from_numpy(logits), target, observed)
    expected = _seed_masked_loss(y_raw, logits)
    assert expected[-1] == pytest.approx(-np.log(1e-7))
    torch.testing.assert_close(term.sum, torch.tensor(expected.sum()), rtol=1e-12, atol=1e-12)
    assert float(term.count) == len(y_raw)  # the seed averages over the batch
    assert float(term.mean()) == pytest.approx(expected.mean(), rel=1e-12)


def test_seed_loss_stays_finite_where_a_literal_port_is_nan():
    logits = torch.tensor([[-200.0, -150.0, 0.0], [1.0, 2.0, 3.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, float("nan")], [0.0, 0.0, 0.0]])
    observed = torch.tensor([[True, True, False], [False, False, False]])
    term = seed_loss(TASK, logits, target, observed)
    term.sum.backward()
    loss = term.sum.detach()
    assert torch.isfinite(loss)
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert (logits.grad[:, 2] == 0).all() and (logits.grad[1] == 0).all()  # missing: no gradient
    # p(y0) / sum(p) = 1 / (1 + e^50), clipped at 1e-7
    assert float(loss) == pytest.approx(-np.log(1e-7), rel=1e-6)


def test_seed_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        seed_loss(TASK, torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(4, 1, dtype=torch.bool))


def test_fill_missing_as_negative():
    y = np.array([[1.0, -1.0], [-1.0, 0.0]])
    assert np.array_equal(fill_missing_as_negative(y), [[1.0, 0.0], [0.0, 0.0]])
    assert y[0, 1] == -1  # a copy


def test_format_table_lists_every_variant():
    results = {
        "variants": {
            "a": {"accuracy": {"y0": 0.5, "y1": 0.25, "y2": 1.0}, "seconds": 3.0},
            "long_name": {"accuracy": {"y0": 0.99876, "y1": 0.0, "y2": 0.1}, "seconds": 12.25},
        }
    }
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["variant", "y0", "y1", "y2", "seconds"]
    assert lines[2].split() == ["a", "0.5000", "0.2500", "1.0000", "3.0"]
    assert lines[3].split() == ["long_name", "0.9988", "0.0000", "0.1000", "12.2"]


def test_run_rejects_bad_epochs(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        run(tmp_path, epochs=0)


def _check_outputs(results, out_dir):
    assert json.loads((out_dir / "results.json").read_text()) == results
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["results.json", *(f"decision_boundary_{label}.png" for label in LABELS)]
    )  # no temporary files left behind
    for label in LABELS:
        assert (out_dir / f"decision_boundary_{label}.png").read_bytes()[:8] == PNG_MAGIC


def test_run_smoke(tmp_path, capsys):
    out_dir = tmp_path / "new" / "demo"
    threads = torch.get_num_threads()
    results = run(out_dir, epochs=2, seed=1)
    assert capsys.readouterr() == ("", "")
    assert torch.get_num_threads() == threads  # restored after training on one thread
    _check_outputs(results, out_dir)
    assert list(results["variants"]) == list(VARIANTS)
    for variant in results["variants"].values():
        for key in ("accuracy", "dev_accuracy"):
            assert set(variant[key]) == set(LABELS)
            assert all(0.0 <= value <= 1.0 for value in variant[key].values())
        assert variant["seconds"] > 0
    settings = results["settings"]
    assert (settings["epochs"], settings["seed"], settings["hidden"]) == (2, 1, [10, 40, 30])
    assert (settings["n_train"], settings["n_dev"], settings["n_test"]) == (87_300, 9_700, 3_000)
    table = format_table(results)
    assert all(name in table for name in VARIANTS)


@pytest.mark.slow
def test_full_run_masked_bce_learns_every_label(tmp_path):
    results = run(tmp_path)
    _check_outputs(results, tmp_path)
    accuracy = results["variants"]["masked_bce"]["accuracy"]
    assert all(accuracy[label] >= 0.99 for label in LABELS), accuracy
