"""Seed 004's siamese MNIST benchmark: its user-defined kinds compute the seed's Keras losses
and keep the masking contract; the smoke run writes its outputs; without the data it skips."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import taskmask

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def kinds() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import siamese_kinds
    finally:
        sys.path.remove(str(BENCHMARKS))
    siamese_kinds.register()
    yield siamese_kinds
    taskmask.unregister_kind("contrastive")
    taskmask.unregister_kind("softmax_contrastive")


def _keras_contrastive(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """The seed's ``contrastive_loss`` before its ``K.mean``, in numpy."""
    return y_true * y_pred**2 + (1 - y_true) * np.maximum(1.0 - y_pred, 0.0) ** 2


def test_the_pair_loss_is_the_seeds_on_observed_pairs(kinds: ModuleType) -> None:
    rng = np.random.default_rng(0)
    distance = rng.uniform(0, 2, size=(20, 1))
    same = rng.integers(0, 2, size=(20, 1)).astype(float)
    observed = rng.random((20, 1)) < 0.7
    garbage = np.where(observed, same, np.nan)
    input = torch.tensor(distance, requires_grad=True)
    task = taskmask.Task(name="pair", kind="contrastive")
    term = taskmask.task_loss(task, input, torch.tensor(garbage), torch.from_numpy(observed))
    term.sum.backward()
    expected = _keras_contrastive(same, distance)[observed].sum()
    assert term.sum.item() == pytest.approx(expected, rel=1e-12)
    assert term.count.item() == observed.sum()
    assert input.grad is not None and torch.all(input.grad[~torch.from_numpy(observed)] == 0)


def test_the_seed_aux_loss_is_keras_contrastive_on_softmax_outputs(kinds: ModuleType) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(12, 10))
    digits = rng.integers(0, 10, size=(12, 1)).astype(float)
    observed = np.ones((12, 1), dtype=bool)
    observed[::3] = False
    term = kinds.softmax_contrastive_loss(
        torch.tensor(logits), torch.tensor(digits), torch.from_numpy(observed)
    )
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    onehot = np.eye(10)[digits[:, 0].astype(int)]
    per_row = _keras_contrastive(onehot, probs).mean(axis=1)
    assert term.sum.item() == pytest.approx(per_row[observed[:, 0]].sum(), rel=1e-12)
    assert term.count.item() == 8


def test_the_distance_head_matches_keras_and_has_a_finite_gradient_at_zero(
    kinds: ModuleType,
) -> None:
    features = torch.tensor([[0.0, 3.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    distance = kinds.PairDistance()(features)
    assert distance[:, 0].tolist() == pytest.approx([5.0, math.sqrt(1e-7)])
    distance.sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_seed_pairs_alternate_same_and_different(kinds: ModuleType) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import siamese_mnist
    finally:
        sys.path.remove(str(BENCHMARKS))
    labels = np.repeat(np.arange(10), 4)
    images = np.arange(40, dtype=np.float32)[:, None]
    pairs = siamese_mnist.make_pairs(images, labels, np.random.default_rng(0))
    assert len(pairs.same) == 10 * 3 * 2
    assert pairs.same[::2].tolist() == [1.0] * 30 and pairs.same[1::2].tolist() == [0.0] * 30
    assert np.all(labels[pairs.inputs[:, :, 0].astype(int)] == pairs.digits)


def test_smoke_run_writes_results_and_a_plot(tmp_path: Path) -> None:
    if not (DATA / "mnist").is_dir():
        pytest.skip(f"{DATA / 'mnist'} is absent")
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "siamese_mnist.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "siamese_mnist.png").stat().st_size > 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["summary"]) == {"siamese", "siamese+digits", "siamese+seed_aux"}
    assert len(report["runs"]) == 6  # 3 variants x 2 smoke seeds
    for run_row in report["runs"]:
        assert 0.0 <= run_row["test_pair_accuracy"] <= 1.0
    assert 0.0 <= report["summary"]["siamese+digits"]["vs_siamese"]["welch_p"] <= 1.0
    assert "| siamese+seed_aux |" in (tmp_path / "results.md").read_text()


def test_without_the_data_it_skips_cleanly(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "siamese_mnist.py"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("skipped: MNIST data not found under")
