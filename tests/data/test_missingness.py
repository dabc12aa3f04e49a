"""Simulated missingness: the asked fraction is hidden, positives twice as often under MNAR,
and nothing but observed labels in the chosen rows is touched."""

from __future__ import annotations

import numpy as np
import pytest

from taskmask.data.missingness import drop_probabilities, hide_labels
from taskmask.errors import TaskmaskError


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("positive_rate", [0.03, 0.1, 0.16, 0.6])
def test_mnar_hides_the_asked_fraction_and_positives_twice_as_often(
    rate: float, positive_rate: float
) -> None:
    y = (np.arange(10_000) < positive_rate * 10_000).astype(float)
    p_neg, p_pos = drop_probabilities(y, rate, "mnar")
    assert (1 - positive_rate) * p_neg + positive_rate * p_pos == pytest.approx(rate)
    assert p_pos == pytest.approx(min(1.0, 2 * p_neg)) or p_pos == 1.0
    assert 0.0 <= p_neg <= p_pos <= 1.0
    assert drop_probabilities(y, rate, "mcar") == (rate, rate)


def test_hide_labels_only_touches_observed_labels_in_the_rows() -> None:
    rng = np.random.default_rng(0)
    Y = rng.integers(0, 2, size=(2000, 3)).astype(float)
    Y[rng.random(Y.shape) < 0.2] = np.nan
    rows = np.arange(1500)
    thin = hide_labels(Y, 0.5, "mcar", rng=np.random.default_rng(1), rows=rows)
    np.testing.assert_array_equal(thin[1500:], Y[1500:])
    was, now = ~np.isnan(Y[rows]), ~np.isnan(thin[rows])
    assert not np.any(now & ~was)
    np.testing.assert_array_equal(thin[rows][now], Y[rows][now])
    assert now.sum() / was.sum() == pytest.approx(0.5, abs=0.03)


def test_mnar_hides_positives_twice_as_often_in_practice() -> None:
    y = (np.random.default_rng(0).random(200_000) < 0.1).astype(float)
    thin = hide_labels(y, 0.3, "mnar", rng=np.random.default_rng(2))
    assert thin.shape == y.shape
    hidden = np.isnan(thin)
    ratio = hidden[y == 1].mean() / hidden[y == 0].mean()
    assert ratio == pytest.approx(2.0, rel=0.05)
    assert hidden.mean() == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize(
    ("Y", "rate", "mechanism", "message"),
    [
        (np.array([0.0, 2.0]), 0.5, "mcar", "0/1 labels"),
        (np.array([0.0, 1.0]), 1.5, "mcar", "rate must be in"),
        (np.array([0.0, 1.0]), 0.5, "often", "mechanism must be"),
    ],
)
def test_bad_arguments_are_named(Y: np.ndarray, rate: float, mechanism: str, message: str) -> None:
    with pytest.raises(TaskmaskError, match=message):
        hide_labels(Y, rate, mechanism, rng=np.random.default_rng(0))  # type: ignore[arg-type]
