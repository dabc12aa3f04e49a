"""Column-wise masked metrics against scikit-learn on each column's observed subset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.errors import TaskmaskError
from taskmask.functional import _columns as columns


def _block(seed: int, n: int, k: int, levels: int) -> tuple[torch.Tensor, ...]:
    """Scores with ties (``levels`` distinct values), 0/1 targets, a random observed mask; the
    missing entries hold NaN / inf garbage."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (n, k)) / max(levels - 1, 1)
    target = (rng.random((n, k)) < 0.4).astype(np.float64)
    observed = rng.random((n, k)) < 0.7
    scores[~observed] = np.where(rng.random((~observed).sum()) < 0.5, np.nan, np.inf)
    target[~observed] = np.nan
    return torch.from_numpy(scores), torch.from_numpy(target), torch.from_numpy(observed)


def _reference(metric, scores: torch.Tensor, target: torch.Tensor, observed: torch.Tensor):
    out = []
    for j in range(scores.shape[1]):
        seen = observed[:, j].numpy()
        y, s = target[seen, j].numpy(), scores[seen, j].numpy()
        out.append(metric(y, s) if 0 < y.sum() < len(y) else math.nan)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 40),
    k=st.integers(1, 6),
    levels=st.sampled_from([2, 3, 7, 1000]),
)
def test_roc_auc_and_average_precision_equal_sklearn(seed: int, n: int, k: int, levels: int):
    scores, target, observed = _block(seed, n, k, levels)
    for ours, theirs in (
        (columns.roc_auc, skm.roc_auc_score),
        (columns.average_precision, skm.average_precision_score),
    ):
        got = ours(scores, target, observed).numpy()
        np.testing.assert_allclose(got, _reference(theirs, scores, target, observed), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), k=st.integers(1, 5))
def test_threshold_rates_equal_sklearn(seed: int, n: int, k: int) -> None:
    scores, target, observed = _block(seed, n, k, levels=5)
    cuts = torch.linspace(0.2, 0.8, k, dtype=torch.float64)
    rates = columns.binary_rates(columns.threshold_counts(scores, target, observed, cuts))
    for j in range(k):
        seen = observed[:, j].numpy()
        y = target[seen, j].numpy()
        pred = (scores[seen, j].numpy() >= cuts[j].item()).astype(float)
        if not len(y):
            assert all(math.isnan(rates[m][j].item()) for m in rates)
            continue
        expected = {
            "accuracy": skm.accuracy_score(y, pred),
            "precision": skm.precision_score(y, pred, zero_division=np.nan),
            "recall": skm.recall_score(y, pred, zero_division=np.nan),
            "f1": skm.f1_score(y, pred, zero_division=np.nan),
        }
        for name, value in expected.items():
            np.testing.assert_allclose(rates[name][j].item(), value, atol=1e-12, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), k=st.integers(1, 5))
def test_regression_errors_equal_sklearn(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    values = torch.from_numpy(rng.normal(size=(n, k)))
    target = torch.from_numpy(np.round(rng.normal(size=(n, k)), 1) - 5)
    observed = torch.from_numpy(rng.random((n, k)) < 0.7)
    target = torch.where(observed, target, torch.full_like(target, torch.nan))
    errors = columns.regression_errors(values, target, observed)
    for j in range(k):
        seen = observed[:, j].numpy()
        y, v = target[seen, j].numpy(), values[seen, j].numpy()
        if not len(y):
            assert math.isnan(errors["mse"][j].item()) and math.isnan(errors["r2"][j].item())
            continue
        np.testing.assert_allclose(errors["mse"][j].item(), skm.mean_squared_error(y, v))
        np.testing.assert_allclose(errors["mae"][j].item(), skm.mean_absolute_error(y, v))
        if len(y) >= 2 and not np.all(y == y[0]):
            np.testing.assert_allclose(errors["r2"][j].item(), skm.r2_score(y, v), atol=1e-9)
        else:
            assert math.isnan(errors["r2"][j].item())


def test_a_missing_entry_changes_nothing() -> None:
    scores, target, observed = _block(3, 50, 4, levels=9)
    before = columns.roc_auc(scores, target, observed)
    garbage = torch.where(observed, scores, torch.full_like(scores, -1e9))
    assert torch.equal(columns.roc_auc(garbage, target, observed), before)


def test_shapes_are_checked_not_broadcast() -> None:
    with pytest.raises(TaskmaskError, match="one shape"):
        columns.roc_auc(torch.zeros(4, 1), torch.zeros(4), torch.ones(4, 1, dtype=torch.bool))
    with pytest.raises(TaskmaskError, match="bool"):
        columns.roc_auc(torch.zeros(4, 1), torch.zeros(4, 1), torch.ones(4, 1))
