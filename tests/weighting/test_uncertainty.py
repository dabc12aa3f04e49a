"""Uncertainty weighting (Kendall, Gal & Cipolla 2018): the total and both gradients follow
``0.5 * exp(-s) * L + 0.5 * s``; a task with nothing observed adds exactly 0 and leaves its
``s`` untouched; ``fit(weighting="uncertainty")`` learns ``s`` and logs its weights."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import taskmask.weighting._uncertainty as uncertainty_module
from taskmask.api import fit
from taskmask.model import MLPConfig
from taskmask.tasks import Task
from taskmask.training import TrainConfig
from taskmask.weighting import make_weighting
from taskmask.weighting._uncertainty import UncertaintyWeighting

FAST = settings(max_examples=50, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
n_tasks = st.integers(min_value=1, max_value=6)


def _weighting(log_variance: list[float]) -> UncertaintyWeighting:
    weighting = UncertaintyWeighting(len(log_variance)).double()
    with torch.no_grad():
        weighting.log_variance.copy_(torch.tensor(log_variance, dtype=torch.float64))
    return weighting


def _draw(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log variances in [-3, 3], losses in [0, 5], observed counts in [1, 50], float64."""
    generator = torch.Generator().manual_seed(seed)
    s = torch.rand(n, generator=generator, dtype=torch.float64) * 6 - 3
    losses = torch.rand(n, generator=generator, dtype=torch.float64) * 5
    counts = torch.randint(1, 50, (n,), generator=generator)
    return s, losses.requires_grad_(), counts


# s, L, n_observed -> total, d total / d s, d total / d L, computed by hand:
# task 0: s=0,     L=2: 0.5*1*2 + 0            = 1,        d/ds = 0.5 - 0.5*1*2    = -0.5
# task 1: s=ln 4,  L=8: 0.5*(1/4)*8 + 0.5*ln 4 = 1 + ln 2, d/ds = 0.5 - 0.5*0.25*8 = -0.5
# task 2: s=ln 2,  L=1: 0.5*(1/2)*1 + 0.5*ln 2 = 0.25 + 0.5 ln 2, d/ds = 0.5 - 0.25 = 0.25
# task 3: s=1, nothing observed: contributes 0, both gradients 0
WORKED = [
    ([0.0], [2.0], [5], 1.0, [-0.5], [0.5]),
    ([0.0, math.log(4)], [2.0, 8.0], [5, 1], 2 + math.log(2), [-0.5, -0.5], [0.5, 0.125]),
    (
        [0.0, math.log(4), math.log(2), 1.0],
        [2.0, 8.0, 1.0, 0.0],
        [5, 1, 3, 0],
        2.25 + 1.5 * math.log(2),
        [-0.5, -0.5, 0.25, 0.0],
        [0.5, 0.125, 0.25, 0.0],
    ),
]


@pytest.mark.parametrize(("s", "losses", "counts", "total", "grad_s", "grad_losses"), WORKED)
def test_worked_cases_computed_by_hand(
    s: list[float],
    losses: list[float],
    counts: list[int],
    total: float,
    grad_s: list[float],
    grad_losses: list[float],
) -> None:
    weighting = _weighting(s)
    loss_tensor = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    value = weighting(loss_tensor, torch.tensor(counts))
    gradient_s, gradient_losses = torch.autograd.grad(value, (weighting.log_variance, loss_tensor))
    expect = torch.tensor
    torch.testing.assert_close(value, expect(total, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient_s, expect(grad_s, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        gradient_losses, expect(grad_losses, dtype=torch.float64), rtol=0, atol=1e-12
    )


@FAST
@given(n=n_tasks, seed=seeds)
def test_total_and_gradients_follow_the_formula(n: int, seed: int) -> None:
    s, losses, counts = _draw(n, seed)
    weighting = _weighting(s.tolist())
    total = weighting(losses, counts)
    torch.testing.assert_close(
        total, (0.5 * torch.exp(-s) * losses + 0.5 * s).sum(), rtol=1e-12, atol=1e-12
    )
    gradient_s, gradient_losses = torch.autograd.grad(total, (weighting.log_variance, losses))
    hand_s = 0.5 - 0.5 * torch.exp(-s) * losses.detach()
    torch.testing.assert_close(gradient_s, hand_s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient_losses, 0.5 * torch.exp(-s), rtol=1e-12, atol=1e-12)


@FAST
@given(n=n_tasks, seed=seeds)
def test_the_gradient_in_s_vanishes_where_the_variance_equals_the_loss(n: int, seed: int) -> None:
    _, losses, counts = _draw(n, seed)
    losses = losses.detach() + 0.1  # log needs a positive loss
    weighting = _weighting(torch.log(losses).tolist())
    (gradient_s,) = torch.autograd.grad(weighting(losses, counts), weighting.log_variance)
    torch.testing.assert_close(gradient_s, torch.zeros_like(gradient_s), rtol=0, atol=1e-12)


@FAST
@given(
    n=n_tasks,
    seed=seeds,
    extra_s=st.floats(min_value=-20, max_value=20),
    extra_loss=st.sampled_from([0.0, 3.0, math.nan, math.inf]),
)
def test_a_task_with_nothing_observed_adds_exactly_nothing(
    n: int, seed: int, extra_s: float, extra_loss: float
) -> None:
    s, losses, counts = _draw(n, seed)
    base = _weighting(s.tolist())
    base_total = base(losses, counts)
    base_s, base_losses = torch.autograd.grad(base_total, (base.log_variance, losses))

    grown = _weighting([*s.tolist(), extra_s])
    empty = torch.tensor([extra_loss], dtype=torch.float64, requires_grad=True)
    total = grown(torch.cat([losses, empty]), torch.cat([counts, counts.new_zeros(1)]))
    gradient_s, gradient_losses, gradient_empty = torch.autograd.grad(
        total, (grown.log_variance, losses, empty)
    )
    assert total.item() == base_total.item()  # not 0.5 * s_extra
    assert torch.equal(gradient_s[:n], base_s)
    assert torch.equal(gradient_losses, base_losses)
    assert gradient_s[n].item() == 0.0  # s of the empty task does not drift
    assert gradient_empty.item() == 0.0


def test_current_weights_are_half_the_precision_and_detached() -> None:
    weighting = _weighting([0.0, math.log(4), -math.log(2)])
    weights = weighting.current_weights()
    torch.testing.assert_close(
        weights, torch.tensor([0.5, 0.125, 1.0], dtype=torch.float64), rtol=1e-12, atol=0.0
    )
    assert not weights.requires_grad
    weights.fill_(9.0)
    assert weighting.current_weights()[0].item() == 0.5


def test_the_log_variances_are_one_learnable_parameter_saved_with_the_state() -> None:
    weighting = UncertaintyWeighting(3, init_log_variance=1.5)
    assert [p.shape for p in weighting.parameters()] == [torch.Size([3])]
    assert set(weighting.state_dict()) == {"log_variance"}
    assert weighting.log_variance.tolist() == [1.5, 1.5, 1.5]


def test_the_total_keeps_the_loss_dtype() -> None:
    weighting = UncertaintyWeighting(2)
    assert weighting(torch.ones(2, dtype=torch.float64), torch.ones(2)).dtype == torch.float64
    assert weighting(torch.ones(2), torch.ones(2)).dtype == torch.float32


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_tasks": 0}, r"n_tasks must be >= 1, got 0"),
        ({"n_tasks": 2, "init_log_variance": math.nan}, r"init_log_variance must be finite"),
        ({"n_tasks": 2, "init_log_variance": math.inf}, r"init_log_variance must be finite"),
    ],
)
def test_bad_settings_are_rejected_by_name(options: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UncertaintyWeighting(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("losses", "counts", "match"),
    [
        (torch.ones(3), torch.ones(2), r"losses must have shape \(2,\).*got \(3,\)"),
        (torch.ones(2, 1), torch.ones(2), r"losses must have shape \(2,\).*got \(2, 1\)"),
        (torch.ones(2), torch.ones(1), r"n_observed must have shape \(2,\).*got \(1,\)"),
    ],
)
def test_wrong_shapes_are_rejected_not_broadcast(
    losses: torch.Tensor, counts: torch.Tensor, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        UncertaintyWeighting(2)(losses, counts)


def test_the_registry_builds_it_with_options() -> None:
    tasks = [Task(name="a", kind="binary"), Task(name="b", kind="regression")]
    weighting = make_weighting("uncertainty", tasks, init_log_variance=math.log(2))
    assert isinstance(weighting, UncertaintyWeighting)
    torch.testing.assert_close(weighting.current_weights(), torch.tensor([0.25, 0.25]))


def test_the_docstring_example_holds() -> None:
    assert doctest.testmod(uncertainty_module).failed == 0


def test_fit_learns_the_log_variances_and_logs_their_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    tox = (x[:, 0] > 0).astype(np.float64)
    tox[rng.random(64) < 0.3] = -1
    size = 10 * x[:, 1] + rng.normal(size=64)
    size[rng.random(64) < 0.3] = np.nan
    tasks = [Task(name="tox", kind="binary"), Task(name="size", kind="regression")]
    result = fit(
        x,
        {"tox": tox, "size": size},
        tasks,
        trunk=MLPConfig(hidden=(8,)),
        epochs=3,
        batch_size=16,
        lr=0.05,
        progress=False,
        config=TrainConfig(weighting="uncertainty"),
    )
    weighting = result.trainer.weighting
    assert isinstance(weighting, UncertaintyWeighting)
    weights = weighting.current_weights()
    last = result.history.iloc[-1]
    assert [last["weight/tox"], last["weight/size"]] == weights.tolist()
    assert (weights != 0.5).all()  # the log variances were trained with the model
    # the noisy regression task (loss >> 1) is trusted less than the binary one
    assert last["weight/size"] < last["weight/tox"]
    assert np.isfinite(result.history.filter(like="weight/").to_numpy()).all()
