"""Static weighting: a weighted sum of per-task losses, never divided by the number of tasks;
a task with nothing observed adds nothing; the registry builds it from `Task.weight`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.errors import TaskmaskError
from taskmask.tasks import Task
from taskmask.weighting import StaticWeighting, make_weighting

FAST = settings(max_examples=50, deadline=None)
weights_lists = st.lists(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False), min_size=1, max_size=6
)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _losses(n_tasks: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    losses = torch.rand(n_tasks, generator=generator, dtype=torch.float64) * 5
    counts = torch.randint(1, 50, (n_tasks,), generator=generator).double()
    return losses.requires_grad_(), counts


@FAST
@given(weights=weights_lists, seed=seeds)
def test_total_is_the_weighted_sum_of_task_losses(weights: list[float], seed: int) -> None:
    losses, counts = _losses(len(weights), seed)
    total = StaticWeighting(weights)(losses, counts)
    w = torch.tensor(weights, dtype=torch.float32).double()
    torch.testing.assert_close(total, (w * losses).sum(), rtol=1e-12, atol=0.0)
    (gradient,) = torch.autograd.grad(total, losses)
    torch.testing.assert_close(gradient, w, rtol=0.0, atol=0.0)


def test_total_is_not_divided_by_the_number_of_tasks() -> None:
    total = StaticWeighting([1.0, 1.0, 0.5])(torch.tensor([2.0, 4.0, 2.0]), torch.ones(3))
    assert total.item() == 7.0


@FAST
@given(weights=weights_lists, extra=st.floats(min_value=0.0, max_value=10.0), seed=seeds)
def test_a_task_with_nothing_observed_adds_nothing(
    weights: list[float], extra: float, seed: int
) -> None:
    losses, counts = _losses(len(weights), seed)
    base = StaticWeighting(weights)(losses, counts)
    (base_gradient,) = torch.autograd.grad(base, losses)

    empty = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # what task_loss gives
    grown = torch.cat([losses, empty])
    total = StaticWeighting([*weights, extra])(grown, torch.cat([counts, counts.new_zeros(1)]))
    assert total.item() == base.item()
    gradient, empty_gradient = torch.autograd.grad(total, (losses, empty))
    assert torch.equal(gradient, base_gradient)
    assert torch.isfinite(empty_gradient).all()


@FAST
@given(weights=weights_lists, seed=seeds, other_seed=seeds)
def test_observed_counts_do_not_change_static_weights(
    weights: list[float], seed: int, other_seed: int
) -> None:
    losses, counts = _losses(len(weights), seed)
    other_counts = _losses(len(weights), other_seed)[1]
    weighting = StaticWeighting(weights)
    assert weighting(losses, counts).item() == weighting(losses, other_counts).item()


def test_the_total_keeps_the_loss_dtype() -> None:
    weighting = StaticWeighting([0.5, 2.0])
    assert weighting(torch.ones(2, dtype=torch.float64), torch.ones(2)).dtype == torch.float64
    assert weighting(torch.ones(2), torch.ones(2)).dtype == torch.float32


def test_current_weights_are_a_copy_and_end_epoch_changes_nothing() -> None:
    weighting = StaticWeighting([0.5, 2.0])
    weighting.current_weights().fill_(9.0)
    weighting.end_epoch(torch.tensor([3.0, 1.0]))
    assert weighting.current_weights().tolist() == [0.5, 2.0]
    assert weighting(torch.ones(2), torch.ones(2)).item() == 2.5
    assert list(weighting.parameters()) == []  # nothing for the optimiser to learn
    assert set(weighting.state_dict()) == {"weights"}  # but saved with a checkpoint


def test_make_weighting_static_uses_task_weights() -> None:
    tasks = [
        Task(name="a", kind="binary", weight=0.25),
        Task(name="b", kind="regression"),
        Task(name="c", kind="multiclass", labels=("x", "y"), weight=3.0),
    ]
    weighting = make_weighting("static", tasks)
    assert isinstance(weighting, StaticWeighting)
    assert weighting.current_weights().tolist() == [0.25, 1.0, 3.0]
    assert weighting(torch.tensor([4.0, 1.0, 2.0]), torch.ones(3)).item() == 8.0


def test_make_weighting_rejects_unknown_names_listing_the_choices() -> None:
    with pytest.raises(
        TaskmaskError, match=r"unknown weighting 'nope'; choose one of \[.*'static'"
    ):
        make_weighting("nope", [Task(name="a", kind="binary")])
