"""FAMO: the model's update and one logit update pinned by hand, Adam parity with torch's,
missing tasks left out, losses floored, fit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.api import fit
from taskmask.errors import TaskmaskError
from taskmask.model import MLPConfig
from taskmask.tasks import Task
from taskmask.training import TrainConfig
from taskmask.weighting import make_weighting
from taskmask.weighting._famo import FastAdaptiveMultitaskWeighting

FAST = settings(max_examples=25, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _loss_gradient(
    weighting: FastAdaptiveMultitaskWeighting, values: list[float], counts: list[int] | None = None
) -> torch.Tensor:
    """``d total / d loss_t``: the weight each task's gradient gets in the model's update."""
    losses = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    counts_ = torch.ones(len(values)) if counts is None else torch.tensor(counts)
    weighting.backward(losses, counts_, shared=[])
    assert losses.grad is not None
    return losses.grad


@pytest.mark.parametrize(
    ("logits", "expected"),
    [
        # z = (1/2, 1/2), z / L = (1/2, 1): c = 1 / 1.5, weights c z / L = (1/3, 2/3)
        ((0.0, 0.0), [1 / 3, 2 / 3]),
        # z = (sigmoid(1), sigmoid(-1)) = (0.731059, 0.268941), z / L = (0.731059, 0.537883)
        ((0.5, -0.5), [0.5761168848, 0.4238831152]),
    ],
)
def test_model_update_is_the_normalised_log_loss_gradient(
    logits: tuple[float, float], expected: list[float]
) -> None:
    weighting = FastAdaptiveMultitaskWeighting(2)
    weighting.logits.copy_(torch.tensor(logits))
    gradient = _loss_gradient(weighting, [1.0, 0.5])
    torch.testing.assert_close(gradient, torch.tensor(expected).double(), rtol=1e-6, atol=0.0)


@FAST
@given(seed=seeds, n_tasks=st.integers(min_value=1, max_value=6))
def test_model_update_is_a_convex_combination_proportional_to_z_over_loss(
    seed: int, n_tasks: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    weighting = FastAdaptiveMultitaskWeighting(n_tasks)
    weighting.logits.copy_(torch.randn(n_tasks, generator=generator))
    values = torch.rand(n_tasks, generator=generator, dtype=torch.float64) * 5 + 1e-3
    gradient = _loss_gradient(weighting, values.tolist())
    z = weighting.current_weights().double()
    torch.testing.assert_close(gradient.sum().item(), 1.0, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(gradient, (z / values) / (z / values).sum(), rtol=1e-6, atol=0.0)


@pytest.mark.parametrize(
    ("logits", "expected"),
    [
        # delta = (log(1/0.8), log(0.5/0.45)) = (0.223144, 0.105361); z = (1/2, 1/2):
        # z . delta = 0.164252, grad = z * (delta - z . delta) = (0.029446, -0.029446), decay 0:
        # xi = -0.025 * grad
        ((0.0, 0.0), [-0.000736144, 0.000736144]),
        # z = (0.731059, 0.268941): z . delta = 0.191467, grad = (0.023158, -0.023158);
        # xi = (0.5, -0.5) - 0.025 * (grad + 0.001 * (0.5, -0.5))
        ((0.5, -0.5), [0.4994085612, -0.4994085612]),
    ],
)
def test_one_logit_update_worked_by_hand(
    logits: tuple[float, float], expected: list[float]
) -> None:
    weighting = FastAdaptiveMultitaskWeighting(2, lr=0.025, gamma=1e-3)
    weighting.logits.copy_(torch.tensor(logits))
    _loss_gradient(weighting, [1.0, 0.5])
    weighting.after_step(torch.tensor([0.8, 0.45]), torch.ones(2))
    torch.testing.assert_close(weighting.logits, torch.tensor(expected), rtol=0.0, atol=1e-7)
    # task 0 improved faster (in log), so it loses weight
    assert weighting.logits.softmax(0)[0] < torch.tensor(logits).softmax(0)[0]
    torch.testing.assert_close(weighting.current_weights(), torch.tensor(expected).exp())


def _softmax_gradient(logits: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    leaf = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad(leaf.softmax(0), leaf, grad_outputs=delta)
    return grad


@FAST
@given(seed=seeds)
def test_adam_update_matches_torch_adam(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    weighting = FastAdaptiveMultitaskWeighting(3, lr=0.025, gamma=0.01, optimizer="adam")
    logits = torch.zeros(3, requires_grad=True)
    adam = torch.optim.Adam([logits], lr=0.025, weight_decay=0.01)
    for _ in range(4):
        before = torch.rand(3, generator=generator) + 0.5
        after = before * (torch.rand(3, generator=generator) * 0.4 + 0.7)
        _loss_gradient(weighting, before.tolist())
        weighting.after_step(after, torch.ones(3))
        delta = before.log() - after.log()
        logits.grad = _softmax_gradient(logits.detach(), delta)
        adam.step()
        torch.testing.assert_close(weighting.logits, logits.detach(), rtol=1e-5, atol=1e-7)
    assert weighting.steps.tolist() == [4.0, 4.0, 4.0]


@FAST
@given(seed=seeds, optimizer=st.sampled_from(["sgd", "adam"]))
def test_appending_an_all_missing_task_changes_nothing(seed: int, optimizer: str) -> None:
    generator = torch.Generator().manual_seed(seed)
    two = FastAdaptiveMultitaskWeighting(2, gamma=0.01, optimizer=optimizer)  # type: ignore[arg-type]
    three = FastAdaptiveMultitaskWeighting(3, gamma=0.01, optimizer=optimizer)  # type: ignore[arg-type]
    three.logits[2] = 0.7  # a missing task's logit neither moves nor decays
    for _ in range(3):
        before = (torch.rand(2, generator=generator) + 0.2).tolist()
        after = (torch.rand(2, generator=generator) + 0.2).tolist()
        base = _loss_gradient(two, before)
        grown = _loss_gradient(three, [*before, 0.0], counts=[5, 2, 0])
        torch.testing.assert_close(grown[:2], base, rtol=1e-6, atol=0.0)
        assert grown[2].item() == 0.0
        two.after_step(torch.tensor(after), torch.tensor([5, 2]))
        three.after_step(torch.tensor([*after, 0.0]), torch.tensor([5, 2, 0]))
        torch.testing.assert_close(three.logits[:2], two.logits, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(three.current_weights()[:2], two.current_weights())
        assert three.logits[2].item() == pytest.approx(0.7)
    assert three.steps[2].item() == 0.0


def test_a_batch_with_nothing_observed_changes_nothing() -> None:
    weighting = FastAdaptiveMultitaskWeighting(2, gamma=0.5)
    weighting.logits.copy_(torch.tensor([0.3, -0.3]))
    gradient = _loss_gradient(weighting, [0.0, 0.0], counts=[0, 0])
    assert gradient.tolist() == [0.0, 0.0]
    weighting.after_step(torch.zeros(2), torch.zeros(2))
    torch.testing.assert_close(weighting.logits, torch.tensor([0.3, -0.3]))


def test_zero_losses_are_floored_at_min_loss() -> None:
    weighting = FastAdaptiveMultitaskWeighting(2, min_loss=1e-8)
    gradient = _loss_gradient(weighting, [0.0, 1.0])
    assert torch.isfinite(gradient).all()
    assert gradient[0].item() == 0.0  # below the floor: no gradient through the clamp
    weighting.after_step(torch.tensor([0.0, 0.5]), torch.ones(2))
    # delta = (0, log 2); z = 1/2: grad = (-log(2) / 4, log(2) / 4)
    expected = torch.tensor([1.0, -1.0]) * 0.025 * math.log(2) / 4
    torch.testing.assert_close(weighting.logits, expected, rtol=1e-6, atol=0.0)


def test_after_step_without_backward_does_nothing() -> None:
    weighting = FastAdaptiveMultitaskWeighting(2)
    assert weighting.needs_losses_after_step
    weighting.after_step(torch.tensor([0.5, 0.5]), torch.ones(2))
    assert weighting.logits.tolist() == [0.0, 0.0]
    _loss_gradient(weighting, [1.0, 1.0])
    weighting.after_step(torch.tensor([0.5, 0.9]), torch.ones(2))
    moved = weighting.logits.clone()
    weighting.after_step(torch.tensor([0.1, 0.9]), torch.ones(2))  # no second update
    assert torch.equal(weighting.logits, moved)


def test_state_is_saved_buffers_not_parameters() -> None:
    weighting = FastAdaptiveMultitaskWeighting(3)
    assert list(weighting.parameters()) == []  # the trainer's optimiser does not touch them
    assert set(weighting.state_dict()) == {"logits", "exp_avg", "exp_avg_sq", "steps"}
    assert weighting.current_weights().tolist() == [1.0, 1.0, 1.0]  # exp(0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": 0.0}, "lr"),
        ({"gamma": -1.0}, "gamma"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"min_loss": 0.0}, "min_loss"),
    ],
)
def test_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskmaskError, match=message):
        FastAdaptiveMultitaskWeighting(2, **options)


def test_registry_builds_it_with_options() -> None:
    tasks = [Task(name="a", kind="binary"), Task(name="b", kind="regression")]
    weighting = make_weighting("famo", tasks, gamma=0.01, optimizer="adam")
    assert isinstance(weighting, FastAdaptiveMultitaskWeighting)
    assert (weighting.gamma, weighting.optimizer) == (0.01, "adam")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_runs_with_finite_history_and_logs_weights(optimizer: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    tox = (x[:, 0] > 0).astype(np.float64)
    tox[rng.random(96) < 0.4] = -1
    pos = x[:, 1] - x[:, 2]
    pos[rng.random(96) < 0.4] = np.nan
    tasks = [Task(name="tox", kind="binary"), Task(name="pos", kind="regression")]
    config = TrainConfig(weighting="famo", weighting_options={"optimizer": optimizer})
    result = fit(
        x,
        {"tox": tox, "pos": pos},
        tasks,
        config=config,
        trunk=MLPConfig(hidden=(8,)),
        epochs=3,
        batch_size=16,
        progress=False,
    )
    history = result.history
    assert len(history) == 3
    assert np.isfinite(history.drop(columns="seconds").to_numpy()).all()
    weights = history[["weight/tox", "weight/pos"]].to_numpy()
    assert (weights > 0).all() and (weights != 1.0).any()  # exp(logits), and they moved
    if optimizer == "sgd":  # the softmax gradient sums to 0: the logits keep summing to ~0
        np.testing.assert_allclose(np.log(weights).sum(axis=1), 0.0, atol=1e-6)
