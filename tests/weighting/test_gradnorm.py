"""GradNorm: one weight update pinned by hand, parity with the paper's update written with a
second-order autograd graph, missing tasks left out, the shared layer every task reaches, fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from taskmask.api import fit
from taskmask.errors import TaskmaskError
from taskmask.model import MLPConfig
from taskmask.tasks import Task
from taskmask.training import TrainConfig
from taskmask.weighting import make_weighting
from taskmask.weighting._gradnorm import GradNormWeighting

FAST = settings(max_examples=15, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _losses(values: list[float], norms: list[float]) -> tuple[torch.Tensor, nn.Parameter]:
    """Losses with the given values whose gradients on the shared ``W`` (1, T) have the given
    norms: ``L_t = norm_t * W[0, t] + (value_t - norm_t)`` at ``W = 1``."""
    shared = nn.Parameter(torch.ones(1, len(values), dtype=torch.float64))
    norm, value = torch.tensor(norms).double(), torch.tensor(values).double()
    return norm * shared[0] + (value - norm), shared


def _step(
    weighting: GradNormWeighting,
    values: list[float],
    norms: list[float],
    counts: list[int] | None = None,
) -> torch.Tensor:
    """One ``backward``; returns the gradient it left on ``W``."""
    losses, shared = _losses(values, norms)
    observed_counts = torch.ones(len(values)) if counts is None else torch.tensor(counts)
    weighting.backward(losses, observed_counts, shared=[shared])
    assert shared.grad is not None
    return shared.grad[0]


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        # r = (5/7, 9/7), r^1.5 = (0.60368, 1.45803); G = (37/39 * 1, 41/39 * 2) = (0.94872,
        # 2.10256), mean 1.52564, target = (0.92100, 2.22418): signs (+, -), so
        # w = (37/39 - 0.025 * 1, 41/39 + 0.025 * 2) = (0.92372, 1.10128), sum 2.025 -> * 2/2.025
        (1.5, [0.9123140234, 1.0876859766]),
        # alpha = 0: target = mean(G) for both, signs (-, +): w = (0.97372, 1.00128) * 2/1.975
        (0.0, [0.9860434924, 1.0139565076]),
    ],
)
def test_two_updates_worked_by_hand(alpha: float, expected: list[float]) -> None:
    weighting = GradNormWeighting(2, alpha=alpha, lr=0.025)
    # Step 1 records L(0) = (2, 1), so L~ = r = (1, 1); G = (3, 1), target = mean(G) = (2, 2):
    # dL_grad/dw = (+3, -1), w = (0.925, 1.025), renormalised to sum 2: (37/39, 41/39).
    gradient = _step(weighting, [2.0, 1.0], [3.0, 1.0])
    torch.testing.assert_close(gradient, torch.tensor([3.0, 1.0]).double())  # old weights (1, 1)
    torch.testing.assert_close(weighting.current_weights(), torch.tensor([37 / 39, 41 / 39]))
    assert weighting.initial_losses.tolist() == [2.0, 1.0]
    # Step 2: L = (1, 0.9), so L~ = (0.5, 0.9); gradient norms (1, 2).
    gradient = _step(weighting, [1.0, 0.9], [1.0, 2.0])
    torch.testing.assert_close(gradient, torch.tensor([37 / 39, 82 / 39]).double())
    torch.testing.assert_close(weighting.current_weights(), torch.tensor(expected))
    assert weighting.current_weights().sum().item() == pytest.approx(2.0, abs=1e-6)


def _reference_step(
    weights: torch.Tensor,
    initial: torch.Tensor,
    losses: torch.Tensor,
    params: Sequence[torch.Tensor],
    alpha: float,
    lr: float,
) -> torch.Tensor:
    """The paper's update as written: G_t through a second-order graph, L_grad by autograd."""
    weights = weights.clone().requires_grad_()
    norms = []
    for t in range(len(losses)):
        grads = torch.autograd.grad(
            weights[t] * losses[t], params, retain_graph=True, create_graph=True
        )
        norms.append(torch.cat([g.flatten() for g in grads]).norm())
    grad_norms = torch.stack(norms)
    ratios = losses.detach() / initial
    target = (grad_norms.mean() * (ratios / ratios.mean()) ** alpha).detach()
    (step,) = torch.autograd.grad((grad_norms - target).abs().sum(), weights)
    updated = weights.detach() - lr * step
    return updated * len(losses) / updated.sum()


def _mlp_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean(0)  # (n_tasks,)


@FAST
@given(seed=seeds, layer=st.sampled_from(["last", "all"]))
def test_matches_the_paper_update_written_with_autograd(seed: int, layer: str) -> None:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh()).double()
    head = nn.Linear(4, 3).double()
    model = nn.Sequential(trunk, head)
    shared = list(trunk.parameters())
    params = shared[2:3] if layer == "last" else shared  # trunk[2].weight
    weighting = GradNormWeighting(3, alpha=1.5, lr=0.05, layer=layer)  # type: ignore[arg-type]
    weights, initial = torch.ones(3, dtype=torch.float64), None
    for _ in range(3):
        x = torch.randn(8, 3, generator=generator, dtype=torch.float64)
        y = torch.randn(8, 3, generator=generator, dtype=torch.float64)
        losses = _mlp_losses(model, x, y)
        initial = losses.detach() if initial is None else initial
        expected = _reference_step(weights, initial, losses, params, 1.5, 0.05)
        combined = torch.autograd.grad((weights * losses).sum(), shared, retain_graph=True)
        model.zero_grad()
        weighting.backward(losses, torch.ones(3), shared=shared)
        for param, grad in zip(shared, combined, strict=True):
            torch.testing.assert_close(param.grad, grad)
        torch.testing.assert_close(
            weighting.current_weights().double(), expected, rtol=1e-5, atol=1e-6
        )
        weights = weighting.current_weights().double()


@FAST
@given(seed=seeds)
def test_appending_an_all_missing_task_changes_nothing(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    two, three = GradNormWeighting(2), GradNormWeighting(3)
    for _ in range(4):
        values = (torch.rand(2, generator=generator) * 3 + 0.1).tolist()
        norms = (torch.rand(2, generator=generator) * 3).tolist()
        base = _step(two, values, norms)
        grown = _step(three, [*values, 0.0], [*norms, 5.0], counts=[4, 7, 0])
        torch.testing.assert_close(grown[:2], base)
        assert grown[2].item() == 0.0  # the missing task adds nothing
        torch.testing.assert_close(three.current_weights()[:2], two.current_weights())
        assert three.current_weights()[2].item() == 1.0  # and keeps its weight
    assert three.current_weights().sum().item() == pytest.approx(3.0, abs=1e-5)
    assert not three.has_initial[2]


def test_initial_loss_is_recorded_at_each_task_first_observed_step() -> None:
    weighting = GradNormWeighting(2)
    _step(weighting, [2.0, 0.0], [1.0, 1.0], counts=[3, 0])
    assert weighting.current_weights().tolist() == [1.0, 1.0]  # one task: target = G
    assert weighting.has_initial.tolist() == [True, False]
    _step(weighting, [1.0, 4.0], [1.0, 1.0], counts=[3, 5])
    assert weighting.initial_losses.tolist() == [2.0, 4.0]
    # L~ = (0.5, 1): r = (2/3, 4/3); G = (1, 1), target = (0.544, 1.540): w = (0.975, 1.025)
    torch.testing.assert_close(weighting.current_weights(), torch.tensor([0.975, 1.025]))


def test_a_batch_with_nothing_observed_gives_zero_gradients() -> None:
    weighting = GradNormWeighting(2)
    gradient = _step(weighting, [0.0, 0.0], [1.0, 1.0], counts=[0, 0])
    assert gradient.tolist() == [0.0, 0.0]
    assert weighting.current_weights().tolist() == [1.0, 1.0]


def test_last_layer_is_the_deepest_one_every_observed_task_reaches() -> None:
    """Task 0 reads the trunk's output, task 1 the first layer's: the last shared weight matrix
    both reach is the first layer's, unless task 1 has no labels in the batch."""
    torch.manual_seed(0)
    first, second = nn.Linear(3, 4).double(), nn.Linear(4, 4).double()
    heads = [nn.Linear(4, 1).double(), nn.Linear(4, 1).double()]
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)

    def losses() -> torch.Tensor:
        hidden = torch.tanh(first(x))
        outputs = [heads[0](torch.tanh(second(hidden))), heads[1](hidden)]
        return torch.stack([((o[:, 0] - y[:, t]) ** 2).mean() for t, o in enumerate(outputs)])

    shared = [*first.parameters(), *second.parameters()]
    weighting = GradNormWeighting(2)
    current = losses()
    expected = _reference_step(
        torch.ones(2).double(), current.detach(), current, [first.weight], 1.5, 0.025
    )
    weighting.backward(current, torch.ones(2), shared=shared)
    weights = weighting.current_weights().double()
    torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)
    assert weighting._search is not None and weighting._search[1] == 0

    alone = GradNormWeighting(2)  # task 1 unobserved: W is the trunk's last weight matrix
    alone.backward(losses(), torch.tensor([6, 0]), shared=shared)
    assert alone._search is not None and alone._search[1] == 1
    alone.backward(losses(), torch.ones(2), shared=shared)
    assert alone._search[1] == 0


def test_a_task_with_a_zero_gradient_everywhere_gets_g_zero() -> None:
    weighting = GradNormWeighting(2)
    _step(weighting, [2.0, 1.0], [3.0, 0.0])
    # G = (3, 0), target = (1.5, 1.5): dL_grad/dw = (3, 0); w = (0.925, 1) * 2/1.925
    torch.testing.assert_close(weighting.current_weights(), torch.tensor([1.85, 2.0]) / 1.925)


def test_weights_are_saved_buffers_not_parameters() -> None:
    weighting = GradNormWeighting(3)
    assert list(weighting.parameters()) == []  # the trainer's optimiser does not touch them
    assert set(weighting.state_dict()) == {"weights", "initial_losses", "has_initial"}
    weighting.current_weights().fill_(9.0)
    assert weighting.current_weights().tolist() == [1.0, 1.0, 1.0]


def test_needs_shared_parameters() -> None:
    losses = torch.ones(2, requires_grad=True)
    with pytest.raises(TaskmaskError, match="shared"):
        GradNormWeighting(2).backward(losses * 2, torch.ones(2), shared=[])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"lr": 0.0}, "lr"),
        ({"layer": "first"}, "layer"),
        ({"min_loss": 0.0}, "min_loss"),
    ],
)
def test_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskmaskError, match=message):
        GradNormWeighting(2, **options)


def test_registry_builds_it_with_options() -> None:
    tasks = [Task(name="a", kind="binary"), Task(name="b", kind="regression")]
    weighting = make_weighting("gradnorm", tasks, alpha=0.5, layer="all")
    assert isinstance(weighting, GradNormWeighting)
    assert (weighting.alpha, weighting.layer) == (0.5, "all")


@pytest.mark.parametrize("layer", ["last", "all"])
def test_fit_runs_with_finite_history_and_logs_weights(layer: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    tox = (x[:, 0] > 0).astype(np.float64)
    tox[rng.random(96) < 0.4] = -1
    pos = x[:, 1] - x[:, 2]
    pos[rng.random(96) < 0.4] = np.nan
    tasks = [Task(name="tox", kind="binary"), Task(name="pos", kind="regression")]
    config = TrainConfig(weighting="gradnorm", weighting_options={"layer": layer})
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
    np.testing.assert_allclose(weights.sum(axis=1), 2.0, rtol=1e-5)
    assert (weights != 1.0).any()  # the weights moved
