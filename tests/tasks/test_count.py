"""The ``count`` kind: Poisson regression with a log link. The masked Poisson NLL equals
torch's on the observed subset and gives missing entries exactly zero gradient; its metrics
equal scikit-learn's on the observed subset; labels must be non-negative integers; the head
starts at the log of the mean count; a fit recovers Poisson rates; predictions are rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
import torch.nn.functional as F

import taskmask
from taskmask import Task, TaskmaskError
from taskmask.app.config import TaskSpec
from taskmask.data import _stream_stats as stream_stats
from taskmask.data import label_coverage, make_data
from taskmask.functional import Undefined, count_metrics, masked_poisson_nll_loss
from taskmask.sklearn import MultiTaskRegressor
from taskmask.tasks import encode_labels, higher_is_better, initial_bias, task_loss


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    log_rate = torch.randn((30, 3), generator=generator, dtype=torch.float64)
    target = torch.poisson(log_rate.exp(), generator=generator)
    observed = torch.rand((30, 3), generator=generator) < 0.6
    return log_rate, target, observed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_masked_poisson_loss_is_torchs_on_the_observed_entries(seed: int) -> None:
    log_rate, target, observed = _inputs(seed)
    total = masked_poisson_nll_loss(log_rate, target, observed, reduction="sum")
    reference = F.poisson_nll_loss(
        log_rate[observed], target[observed], log_input=True, full=False, reduction="sum"
    )
    torch.testing.assert_close(total, reference, rtol=1e-12, atol=0)
    mean = masked_poisson_nll_loss(log_rate, target, observed)
    torch.testing.assert_close(mean, reference / observed.sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("garbage", [math.nan, math.inf, -3.0, 1e9])
def test_a_missing_count_adds_nothing_and_gets_zero_gradient(garbage: float) -> None:
    log_rate, target, observed = _inputs(3)
    task = Task(name="n", kind="count", n_outputs=3)
    grads, sums = [], []
    for filled in (target, torch.where(observed, target, garbage)):
        leaf = log_rate.clone().requires_grad_()
        term = task_loss(task, leaf, filled, observed)
        term.sum.backward()
        assert leaf.grad is not None
        grads.append(leaf.grad)
        sums.append(term.sum.detach())
        assert term.count.item() == observed.sum().item()
    assert torch.equal(sums[0], sums[1]) and torch.equal(grads[0], grads[1])
    assert torch.all(grads[1][~observed] == 0)
    seen = observed
    expected = log_rate.exp() - target  # d/dx (exp(x) - y x)
    torch.testing.assert_close(grads[0][seen], expected[seen], rtol=1e-12, atol=0)


def test_the_poisson_loss_passes_gradcheck() -> None:
    log_rate, target, observed = _inputs(4)
    leaf = log_rate.clone().requires_grad_()
    filled = torch.where(observed, target, math.nan)
    assert torch.autograd.gradcheck(
        lambda x: masked_poisson_nll_loss(x, filled, observed, reduction="sum"), (leaf,)
    )


def test_count_metrics_equal_sklearn_on_the_observed_subset() -> None:
    log_rate, target, observed = _inputs(5)
    rates, y, seen = log_rate.exp().numpy(), target.numpy(), observed.numpy()
    garbage = np.where(seen, y, np.nan)
    metrics = count_metrics(rates, garbage, seen, names=["a", "b", "c"])
    for j, name in enumerate("abc"):
        deviance = skm.mean_poisson_deviance(y[seen[:, j], j], rates[seen[:, j], j])
        mae = skm.mean_absolute_error(y[seen[:, j], j], rates[seen[:, j], j])
        assert metrics[f"poisson_deviance/{name}"] == pytest.approx(deviance, rel=1e-12)
        assert metrics[f"mae/{name}"] == pytest.approx(mae, rel=1e-12)
        assert metrics[f"n_observed/{name}"] == seen[:, j].sum()
    none = count_metrics(rates[:, :1], y[:, :1], np.zeros((30, 1), bool), names=["a"])
    assert isinstance(none["poisson_deviance"], Undefined)
    assert not higher_is_better("poisson_deviance") and not higher_is_better("n.mae_macro")
    assert not higher_is_better("poisson_deviance_macro") and not higher_is_better("mae/n")


def test_count_labels_are_non_negative_integers_or_missing() -> None:
    task = Task(name="visits", kind="count")
    raw = np.array([3, None, "", 0, np.nan, 12], dtype=object)
    enc = encode_labels(task, raw)
    assert enc.observed[:, 0].tolist() == [True, False, False, True, False, True]
    assert enc.target[:, 0].tolist() == [3.0, 0.0, 0.0, 0.0, 0.0, 12.0]
    with pytest.raises(TaskmaskError, match=r"visits.csv, task 'visits'.*-1 at row 2.*integer"):
        encode_labels(task, [1.0, 2.0, -1.0], source="visits.csv")
    with pytest.raises(TaskmaskError, match=r"task 'visits'.*2.5 at row 1"):
        encode_labels(task, [1.0, 2.5], source="visits.csv")
    wide = Task(name="n", kind="count", labels=("a", "b"))
    with pytest.raises(TaskmaskError, match=r"count b has value 0.5 at row 0"):
        encode_labels(wide, [[1.0, 0.5]])


def test_the_head_starts_at_the_log_of_the_mean_count() -> None:
    task = Task(name="n", kind="count", n_outputs=3)
    raw = np.array([[1.0, 0.0, np.nan], [3.0, 0.0, np.nan], [np.nan, 0.0, np.nan]])
    data = make_data(np.zeros((3, 2), np.float32), {"n": raw}, [task])
    stats = stream_stats.label_stats([task], data.labels, len(data))
    bias = initial_bias(task, stats.counts["n"], stats.sums["n"])
    assert bias is not None
    torch.testing.assert_close(bias, torch.tensor([math.log(2.0), math.log(1e-6), 0.0]))
    assert stream_stats.initial_biases([task], stats)["n"].tolist() == bias.tolist()
    coverage = label_coverage(data, [task]).labels
    assert coverage["n_observed"].tolist() == [2, 3, 0]
    assert "n_positive" not in coverage


def test_a_fit_recovers_poisson_rates_and_predicts_rates() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3)).astype(np.float32)
    true_log_rate = 1.0 + x @ np.array([0.6, -0.4, 0.2])
    counts = rng.poisson(np.exp(true_log_rate)).astype(float)
    counts[::5] = np.nan
    task = Task(name="visits", kind="count")
    result = taskmask.fit(
        x[:500], {"visits": counts[:500]}, [task], epochs=40, lr=1e-2, batch_size=64,
        progress=False,
    )  # fmt: skip
    metrics = taskmask.evaluate(result.model, x[500:], {"visits": counts[500:]})["visits"]
    test = ~np.isnan(counts[500:])
    constant = np.full(test.sum(), np.nanmean(counts[:500]))
    baseline = skm.mean_poisson_deviance(counts[500:][test], constant)
    assert metrics["n_observed"] == test.sum()
    assert metrics["poisson_deviance"] < 0.5 * baseline
    frame = taskmask.predictions_frame(taskmask.predict(result.model, x[500:]))
    assert list(frame.columns) == ["visits.rate"]
    rates = frame["visits.rate"].to_numpy()
    assert (rates > 0).all()
    expected = skm.mean_poisson_deviance(counts[500:][test], rates[test])
    assert metrics["poisson_deviance"] == pytest.approx(expected, rel=1e-5)
    assert np.corrcoef(np.log(rates), true_log_rate[500:])[0, 1] > 0.95


def test_a_count_task_in_a_run_config_and_in_the_sklearn_regressor() -> None:
    spec = TaskSpec.model_validate({"name": "n", "kind": "count", "columns": ["a", "b"]})
    assert spec.labels == ("a", "b") and spec.width == 2
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 3))
    y = rng.poisson(np.exp(0.5 + x[:, :1]), size=(120, 1)).astype(float)
    y[::6] = np.nan
    reg = MultiTaskRegressor(
        tasks=[{"name": "n", "kind": "count", "column": "y"}], epochs=5, random_state=0
    ).fit(x, y[:, 0])
    rates = reg.predict(x)
    assert rates.shape == (120,) and (rates > 0).all()
