"""Dynamic Weight Average (Liu, Johns & Davison 2019): weights 1 for two epochs, then
``K * softmax(L(e-1) / L(e-2) / T)``; a task without observed labels in an epoch keeps weight 1
and leaves the others' weights alone; weights hold for a whole epoch, never per batch."""

from __future__ import annotations

import doctest
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import taskmask.weighting._dwa as dwa_module
from taskmask.api import fit
from taskmask.model import MLPConfig
from taskmask.tasks import Task
from taskmask.training import TrainConfig
from taskmask.weighting import make_weighting
from taskmask.weighting._dwa import DynamicWeightAverage

FAST = settings(max_examples=50, deadline=None)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
n_tasks = st.integers(min_value=1, max_value=6)
temperatures = st.floats(min_value=0.1, max_value=10.0)


def _after(epochs: list[list[float]], **options: float) -> DynamicWeightAverage:
    """A K-task weighting that has seen ``epochs`` (one list of K mean losses per epoch)."""
    weighting = DynamicWeightAverage(len(epochs[0]), **options)
    for losses in epochs:
        weighting.end_epoch(torch.tensor(losses))
    return weighting


def _epoch_losses(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two epochs of positive losses in [0.1, 5]."""
    generator = torch.Generator().manual_seed(seed)
    older, newer = torch.rand(2, n, generator=generator) * 4.9 + 0.1
    return older, newer


# Three tasks, T = 2. Epoch losses and the weights for the following epoch, by hand:
# after epoch 1 (no ratio yet):            w = (1, 1, 1)
# after epoch 2, L = (1, 2, 4) -> (0.5, 2, 5): r = (0.5, 1, 1.25), r / T = (0.25, 0.5, 0.625)
#   w = 3 * (e^.25, e^.5, e^.625) / (e^.25 + e^.5 + e^.625)
#     = 3 * (1.284025, 1.648721, 1.868246) / 4.800993 = (0.802350, 1.030238, 1.167412)
# after epoch 3, L -> (0.25, 1, 5): r = (0.5, 0.5, 1), r / T = (0.25, 0.25, 0.5)
#   w = 3 * (1.284025, 1.284025, 1.648721) / 4.216772 = (0.913513, 0.913513, 1.172974)
# with T = 1 after epoch 2: r = (0.5, 1, 1.25)
#   w = 3 * (1.648721, 2.718282, 3.490343) / 7.857346 = (0.629495, 1.037863, 1.332642)
EPOCHS = [[1.0, 2.0, 4.0], [0.5, 2.0, 5.0], [0.25, 1.0, 5.0]]
WORKED = [
    (EPOCHS[:0], 2.0, [1.0, 1.0, 1.0]),
    (EPOCHS[:1], 2.0, [1.0, 1.0, 1.0]),
    (EPOCHS[:2], 2.0, [0.802350, 1.030238, 1.167412]),
    (EPOCHS[:3], 2.0, [0.913513, 0.913513, 1.172974]),
    (EPOCHS[:2], 1.0, [0.629495, 1.037863, 1.332642]),
]


@pytest.mark.parametrize(("epochs", "temperature", "weights"), WORKED)
def test_worked_cases_computed_by_hand(
    epochs: list[list[float]], temperature: float, weights: list[float]
) -> None:
    weighting = DynamicWeightAverage(3, temperature=temperature)
    for losses in epochs:
        weighting.end_epoch(torch.tensor(losses))
    torch.testing.assert_close(
        weighting.current_weights(), torch.tensor(weights), rtol=0, atol=1e-6
    )
    # forward is the weighted sum with these epoch weights
    total = weighting(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4, 1, 2]))
    expected = torch.tensor(weights) @ torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(total, expected, rtol=0, atol=1e-5)


def test_the_first_two_epochs_weigh_every_task_exactly_one() -> None:
    weighting = DynamicWeightAverage(4)
    assert weighting.current_weights().tolist() == [1.0] * 4
    weighting.end_epoch(torch.tensor([3.0, 0.1, 7.0, 1.0]))
    assert weighting.current_weights().tolist() == [1.0] * 4


@FAST
@given(n=n_tasks, seed=seeds, temperature=temperatures)
def test_weights_follow_the_formula_and_sum_to_the_number_of_tasks(
    n: int, seed: int, temperature: float
) -> None:
    older, newer = _epoch_losses(n, seed)
    weights = _after([older.tolist(), newer.tolist()], temperature=temperature).current_weights()
    ratio = newer.double() / older.double()
    expected = n * torch.softmax(ratio / temperature, dim=0)
    torch.testing.assert_close(weights, expected.float(), rtol=1e-6, atol=1e-6)
    assert (weights >= 0).all()  # positive in exact arithmetic; may underflow for small T
    torch.testing.assert_close(weights.sum(), torch.tensor(float(n)), rtol=1e-5, atol=0.0)


@FAST
@given(n=n_tasks, seed=seeds, scale=st.floats(min_value=1e-3, max_value=1e3))
def test_a_task_rescaled_in_both_epochs_keeps_its_weight(n: int, seed: int, scale: float) -> None:
    older, newer = _epoch_losses(n, seed)
    weights = _after([older.tolist(), newer.tolist()]).current_weights()
    older[0], newer[0] = older[0] * scale, newer[0] * scale
    rescaled = _after([older.tolist(), newer.tolist()]).current_weights()
    torch.testing.assert_close(rescaled, weights, rtol=1e-5, atol=1e-6)


@FAST
@given(n=n_tasks, seed=seeds, data=st.data())
def test_permuting_the_tasks_permutes_the_weights(n: int, seed: int, data: st.DataObject) -> None:
    order = torch.tensor(data.draw(st.permutations(range(n))))
    older, newer = _epoch_losses(n, seed)
    weights = _after([older.tolist(), newer.tolist()]).current_weights()
    permuted = _after([older[order].tolist(), newer[order].tolist()]).current_weights()
    torch.testing.assert_close(permuted, weights[order], rtol=1e-6, atol=1e-6)


@FAST
@given(
    n=n_tasks,
    seed=seeds,
    which=st.sampled_from(["older", "newer", "both"]),
    value=st.sampled_from([0.0, math.nan, math.inf]),
)
def test_a_task_without_an_epoch_loss_keeps_weight_one_and_changes_no_other(
    n: int, seed: int, which: str, value: float
) -> None:
    older, newer = _epoch_losses(n, seed)
    base = _after([older.tolist(), newer.tolist()]).current_weights()
    grown = _after(
        [
            [*older.tolist(), value if which in ("older", "both") else 2.0],
            [*newer.tolist(), value if which in ("newer", "both") else 2.0],
        ]
    ).current_weights()
    assert torch.equal(grown[:n], base)
    assert grown[n].item() == 1.0


def test_with_every_ratio_undefined_every_weight_is_one() -> None:
    weighting = _after([[0.0, math.nan], [1.0, 2.0]])
    assert weighting.current_weights().tolist() == [1.0, 1.0]


def test_only_the_last_two_epochs_count() -> None:
    recent = _after(EPOCHS[1:3]).current_weights()
    assert torch.equal(_after(EPOCHS).current_weights(), recent)
    assert torch.equal(_after([[9.0, 0.0, 1.0], *EPOCHS[1:3]]).current_weights(), recent)


def test_a_task_absent_from_the_batch_adds_nothing_and_others_keep_epoch_weights() -> None:
    weighting = _after(EPOCHS[:2])
    weights = weighting.current_weights()
    losses = torch.tensor([2.0, 0.0, 3.0], requires_grad=True)
    total = weighting(losses, torch.tensor([5, 0, 2]))
    # no renormalisation over the two tasks present: the epoch's weights as they are
    torch.testing.assert_close(total, 2.0 * weights[0] + 3.0 * weights[2], rtol=0, atol=0)
    (gradient,) = torch.autograd.grad(total, losses)
    assert torch.equal(gradient, torch.stack([weights[0], torch.tensor(0.0), weights[2]]))


def test_forward_is_the_same_whatever_an_empty_task_loss_holds() -> None:
    weighting = _after(EPOCHS[:2])
    counts = torch.tensor([5, 0, 2])
    base = weighting(torch.tensor([2.0, 0.0, 3.0]), counts)
    for value in (7.0, math.nan, math.inf):
        losses = torch.tensor([2.0, value, 3.0], requires_grad=True)
        total = weighting(losses, counts)
        assert total.item() == base.item()
        assert torch.autograd.grad(total, losses)[0][1].item() == 0.0


def test_the_state_is_buffers_saved_and_restored_with_the_weights() -> None:
    trained = _after(EPOCHS[:2])
    assert list(trained.parameters()) == []
    assert set(trained.state_dict()) == {"last_epoch_losses", "previous_epoch_losses", "weights"}
    restored = DynamicWeightAverage(3)
    restored.load_state_dict(trained.state_dict())
    assert torch.equal(restored.current_weights(), trained.current_weights())
    restored.end_epoch(torch.tensor(EPOCHS[2]))
    assert torch.equal(restored.current_weights(), _after(EPOCHS).current_weights())


def test_current_weights_are_a_copy() -> None:
    weighting = _after(EPOCHS[:2])
    weighting.current_weights().fill_(9.0)
    assert weighting.current_weights().max().item() < 2.0


def test_the_total_keeps_the_loss_dtype() -> None:
    weighting = DynamicWeightAverage(2)
    assert weighting(torch.ones(2, dtype=torch.float64), torch.ones(2)).dtype == torch.float64
    assert weighting(torch.ones(2), torch.ones(2)).dtype == torch.float32


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_tasks": 0}, r"n_tasks must be >= 1, got 0"),
        ({"n_tasks": 2, "temperature": 0.0}, r"temperature must be finite and > 0, got 0.0"),
        ({"n_tasks": 2, "temperature": -1.0}, r"temperature must be finite and > 0, got -1.0"),
        ({"n_tasks": 2, "temperature": math.inf}, r"temperature must be finite and > 0, got inf"),
        ({"n_tasks": 2, "temperature": math.nan}, r"temperature must be finite and > 0, got nan"),
    ],
)
def test_bad_settings_are_rejected_by_name(options: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DynamicWeightAverage(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda w: w.end_epoch(torch.ones(3)), r"epoch_losses must have shape \(2,\).*got \(3,\)"),
        (lambda w: w(torch.ones(2, 1), torch.ones(2)), r"losses must .*\(2,\).*got \(2, 1\)"),
        (lambda w: w(torch.ones(2), torch.ones(3)), r"n_observed must .*\(2,\).*got \(3,\)"),
    ],
)
def test_wrong_shapes_are_rejected_not_broadcast(
    call: Callable[[DynamicWeightAverage], object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        call(DynamicWeightAverage(2))


def test_the_registry_builds_it_with_options() -> None:
    tasks = [Task(name=name, kind="regression") for name in ("a", "b", "c")]
    weighting = make_weighting("dwa", tasks, temperature=1.0)
    assert isinstance(weighting, DynamicWeightAverage)
    for losses in EPOCHS[:2]:
        weighting.end_epoch(torch.tensor(losses))
    torch.testing.assert_close(
        weighting.current_weights(), torch.tensor([0.629495, 1.037863, 1.332642]), atol=1e-6, rtol=0
    )


def test_the_docstring_example_holds() -> None:
    assert doctest.testmod(dwa_module).failed == 0


def test_fit_logs_the_weights_dwa_derives_from_the_logged_epoch_losses() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    tox = (x[:, 0] > 0).astype(np.float64)
    tox[rng.random(64) < 0.3] = -1
    size = x[:, 1] - x[:, 2]
    size[rng.random(64) < 0.3] = np.nan
    tasks = [Task(name="tox", kind="binary"), Task(name="size", kind="regression")]
    result = fit(
        x,
        {"tox": tox, "size": size},
        tasks,
        trunk=MLPConfig(hidden=(8,)),
        epochs=4,
        batch_size=16,
        lr=0.05,
        progress=False,
        config=TrainConfig(weighting="dwa", weighting_options={"temperature": 1.5}),
    )
    history = result.history
    weights = history[["weight/tox", "weight/size"]].to_numpy()
    losses = history[["train/tox/loss", "train/size/loss"]].to_numpy()
    # a row logs the weights that epoch trained with: DWA's, from the two epochs before it
    assert weights[0].tolist() == weights[1].tolist() == [1.0, 1.0]
    for epoch in range(2, 4):
        ratio = losses[epoch - 1] / losses[epoch - 2] / 1.5
        expected = 2 * np.exp(ratio) / np.exp(ratio).sum()
        np.testing.assert_allclose(weights[epoch], expected, rtol=1e-5)
    weighting = result.trainer.weighting
    assert isinstance(weighting, DynamicWeightAverage)
    ratio = losses[3] / losses[2] / 1.5
    expected = 2 * np.exp(ratio) / np.exp(ratio).sum()
    np.testing.assert_allclose(weighting.current_weights().numpy(), expected, rtol=1e-5)
    assert not np.allclose(weights[2:], 1.0)
