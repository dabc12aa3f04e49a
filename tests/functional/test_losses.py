"""Masked losses: a missing entry never counts, whatever it holds; the rest is plain torch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmask.functional import (
    LossTerm,
    balanced_pos_weight,
    masked_binary_cross_entropy_with_logits,
    masked_cross_entropy,
    masked_huber_loss,
    masked_l1_loss,
    masked_mse_loss,
)
from taskmask.tasks import Task, task_loss

FAST = settings(max_examples=25, deadline=None)
REDUCTIONS = ("mean", "sum", "none")
NON_FINITE = (math.nan, math.inf, -math.inf)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tensors here are tiny: intra-op threads only add contention on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


seeds = st.integers(min_value=0, max_value=2**32 - 1)
sizes = st.integers(min_value=1, max_value=8)
widths = st.integers(min_value=1, max_value=4)
rates = st.sampled_from([0.0, 0.3, 0.7, 1.0])


@dataclass(frozen=True)
class Case:
    """A masked loss, its plain torch counterpart, and the kind of target it takes."""

    name: str
    masked: Callable[..., torch.Tensor]
    plain: Callable[..., torch.Tensor]
    target: str  # "binary", "classes" or "real"
    pos_weight: bool = False
    options: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "bce", masked_binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, "binary"
    ),
    Case(
        "bce_pos_weight",
        masked_binary_cross_entropy_with_logits,
        F.binary_cross_entropy_with_logits,
        "binary",
        pos_weight=True,
    ),
    Case("cross_entropy", masked_cross_entropy, F.cross_entropy, "classes"),
    Case("mse", masked_mse_loss, F.mse_loss, "real"),
    Case("l1", masked_l1_loss, F.l1_loss, "real"),
    Case("huber", masked_huber_loss, F.huber_loss, "real", options={"delta": 0.7}),
]
FLOAT_CASES = [case for case in CASES if case.target != "classes"]


def by_name(cases: list[Case]) -> Any:
    return pytest.mark.parametrize("case", cases, ids=[case.name for case in cases])


@dataclass
class Data:
    input: torch.Tensor
    target: torch.Tensor
    observed: torch.Tensor
    options: dict[str, Any]  # keyword arguments of the masked loss
    subset_options: dict[str, Any]  # the same for the plain loss on the observed subset


def make(
    case: Case, n: int, k: int, seed: int, rate: float, dtype: torch.dtype = torch.float32
) -> Data:
    """Inputs ``(n, k)`` (``(n, k + 1)`` logits for cross entropy) with about ``rate`` observed."""
    gen = torch.Generator().manual_seed(seed)
    if case.target == "classes":
        input = torch.randn(n, k + 1, generator=gen, dtype=dtype) * 3
        target = torch.randint(0, k + 1, (n,), generator=gen)
    else:
        input = torch.randn(n, k, generator=gen, dtype=dtype) * 3
        if case.target == "binary":
            target = torch.randint(0, 2, (n, k), generator=gen).to(dtype)
        else:
            target = torch.randn(n, k, generator=gen, dtype=dtype) * 2
    observed = torch.rand(target.shape, generator=gen) < rate
    options, subset_options = dict(case.options), dict(case.options)
    if case.pos_weight:
        pos_weight = torch.rand(k, generator=gen, dtype=dtype) * 3 + 0.1
        options["pos_weight"] = pos_weight
        subset_options["pos_weight"] = pos_weight.expand(n, k)[observed]
    return Data(input, target, observed, options, subset_options)


def loss_and_grad(
    case: Case, data: Data, target: torch.Tensor, reduction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    input = data.input.clone().requires_grad_(True)
    loss = case.masked(input, target, data.observed, reduction=reduction, **data.options)
    loss.sum().backward()
    assert input.grad is not None
    return loss.detach(), input.grad


@by_name(FLOAT_CASES)
@FAST
@given(
    n=sizes,
    k=widths,
    seed=seeds,
    rate=rates,
    value=st.floats(allow_nan=True, allow_infinity=True),
)
def test_missing_float_targets_change_neither_loss_nor_gradient(
    case: Case, n: int, k: int, seed: int, rate: float, value: float
) -> None:
    data = make(case, n, k, seed, rate)
    gen = torch.Generator().manual_seed(seed)
    # Each missing entry gets NaN, +inf, -inf or the drawn value.
    choices = torch.tensor([*NON_FINITE, value], dtype=data.target.dtype)
    garbage = choices[torch.randint(0, 4, data.target.shape, generator=gen)]
    corrupted = torch.where(data.observed, data.target, garbage)
    for reduction in REDUCTIONS:
        loss, grad = loss_and_grad(case, data, data.target, reduction)
        loss_corrupted, grad_corrupted = loss_and_grad(case, data, corrupted, reduction)
        assert torch.equal(loss, loss_corrupted)
        assert torch.equal(grad, grad_corrupted)
        assert torch.equal(grad[~data.observed], torch.zeros_like(grad[~data.observed]))


@by_name(FLOAT_CASES)
@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_missing_targets_are_ignored(case: Case, value: float) -> None:
    data = make(case, 6, 3, seed=7, rate=0.5)
    assert data.observed.any() and not data.observed.all()
    corrupted = data.target.masked_fill(~data.observed, value)
    for reduction in REDUCTIONS:
        loss, grad = loss_and_grad(case, data, data.target, reduction)
        loss_corrupted, grad_corrupted = loss_and_grad(case, data, corrupted, reduction)
        assert torch.isfinite(loss_corrupted).all()
        assert torch.equal(loss, loss_corrupted)
        assert torch.equal(grad, grad_corrupted)


@settings(max_examples=40, deadline=None)
@given(
    n=sizes,
    k=widths,
    seed=seeds,
    rate=rates,
    value=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_missing_class_targets_change_neither_loss_nor_gradient(
    n: int, k: int, seed: int, rate: float, value: int
) -> None:
    case = next(case for case in CASES if case.name == "cross_entropy")
    data = make(case, n, k, seed, rate)
    corrupted = data.target.masked_fill(~data.observed, value)
    for reduction in REDUCTIONS:
        loss, grad = loss_and_grad(case, data, data.target, reduction)
        loss_corrupted, grad_corrupted = loss_and_grad(case, data, corrupted, reduction)
        assert torch.equal(loss, loss_corrupted)
        assert torch.equal(grad, grad_corrupted)
        assert torch.equal(grad[~data.observed], torch.zeros_like(grad[~data.observed]))


@by_name(CASES)
@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates)
def test_mean_and_sum_equal_the_plain_loss_on_the_observed_subset(
    case: Case, n: int, k: int, seed: int, rate: float
) -> None:
    data = make(case, n, k, seed, rate)
    observed = data.observed
    for reduction in ("mean", "sum"):
        loss = case.masked(data.input, data.target, observed, reduction=reduction, **data.options)
        if observed.any():
            expected = case.plain(
                data.input[observed],
                data.target[observed],
                reduction=reduction,
                **data.subset_options,
            )
        else:
            expected = torch.zeros(())
        assert loss.shape == ()
        torch.testing.assert_close(loss, expected, **TOLERANCE)


@by_name(CASES)
@FAST
@given(n=sizes, k=widths, seed=seeds, rate=rates)
def test_none_is_the_plain_loss_where_observed_and_zero_where_missing(
    case: Case, n: int, k: int, seed: int, rate: float
) -> None:
    data = make(case, n, k, seed, rate)
    observed = data.observed
    loss = case.masked(data.input, data.target, observed, reduction="none", **data.options)
    assert loss.shape == data.target.shape
    assert (loss[~observed] == 0.0).all()
    expected = case.plain(
        data.input[observed], data.target[observed], reduction="none", **data.subset_options
    )
    torch.testing.assert_close(loss[observed], expected, **TOLERANCE)


@by_name(CASES)
@settings(max_examples=15, deadline=None)
@given(n=sizes, k=widths, seed=seeds)
def test_all_missing_gives_an_exact_graph_connected_zero(
    case: Case, n: int, k: int, seed: int
) -> None:
    data = make(case, n, k, seed, rate=0.0)
    assert not data.observed.any()
    if case.target == "classes":
        target = torch.full_like(data.target, -100)
    else:
        target = torch.full_like(data.target, math.nan)
    for reduction in REDUCTIONS:
        input = data.input.clone().requires_grad_(True)
        loss = case.masked(input, target, data.observed, reduction=reduction, **data.options)
        assert loss.requires_grad
        assert torch.isfinite(loss).all()
        assert (loss == 0.0).all()
        if reduction == "none":
            assert loss.shape == target.shape
        else:
            assert loss.item() == 0.0
        loss.sum().backward()
        assert input.grad is not None
        assert torch.equal(input.grad, torch.zeros_like(input.grad))


@by_name(CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_float64_with_missing_entries(case: Case, reduction: str) -> None:
    data = make(case, 5, 3, seed=3, rate=0.5, dtype=torch.float64)
    observed = data.observed.clone()
    observed.view(-1)[0], observed.view(-1)[1] = False, True
    target = data.target
    if case.target != "classes":
        target = target.masked_fill(~observed, math.nan)
    input = data.input.clone().requires_grad_(True)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return case.masked(x, target, observed, reduction=reduction, **data.options)

    assert torch.autograd.gradcheck(loss, (input,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("loss", "input", "target", "observed", "message"),
    [
        (masked_mse_loss, (4, 1), (4,), (4,), r"input \(4, 1\) and target \(4,\)"),
        (masked_l1_loss, (4,), (4, 1), (4, 1), r"input \(4,\) and target \(4, 1\)"),
        (masked_huber_loss, (4, 2), (4, 2), (4, 1), r"target \(4, 2\) and observed \(4, 1\)"),
        (
            masked_binary_cross_entropy_with_logits,
            (3, 2),
            (3, 1),
            (3, 1),
            r"input \(3, 2\) and target \(3, 1\)",
        ),
        (masked_cross_entropy, (4,), (4,), (4,), r"expected input \(N, C\)"),
        (masked_cross_entropy, (4, 3), (4, 3), (4, 3), r"expected input \(N, C\)"),
    ],
)
def test_shape_mismatch_raises_naming_the_shapes(
    loss: Callable[..., torch.Tensor],
    input: tuple[int, ...],
    target: tuple[int, ...],
    observed: tuple[int, ...],
    message: str,
) -> None:
    target_tensor = torch.zeros(target, dtype=torch.long if loss is masked_cross_entropy else None)
    with pytest.raises(ValueError, match=message):
        loss(torch.zeros(input), target_tensor, torch.ones(observed, dtype=torch.bool))


def test_observed_must_be_bool() -> None:
    with pytest.raises(ValueError, match=r"observed must be a bool tensor, got torch\.float32"):
        masked_mse_loss(torch.zeros(3, 1), torch.zeros(3, 1), torch.ones(3, 1))


TASKS = [
    Task(name="b", kind="binary"),
    Task(name="ml", kind="multilabel", labels=("x", "y", "z"), pos_weight="balanced"),
    Task(name="c", kind="multiclass", labels=("a", "b", "c")),
    Task(name="r_mse", kind="regression", n_outputs=2),
    Task(name="r_l1", kind="regression", n_outputs=2, loss="l1"),
    Task(name="r_huber", kind="regression", n_outputs=2, loss="huber", huber_delta=0.3),
]
PLAIN = {
    "b": F.binary_cross_entropy_with_logits,
    "ml": F.binary_cross_entropy_with_logits,
    "c": F.cross_entropy,
    "r_mse": F.mse_loss,
    "r_l1": F.l1_loss,
    "r_huber": lambda x, y, **kw: F.huber_loss(x, y, delta=0.3, **kw),
}


def task_data(
    task: Task, n: int, seed: int, rate: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    input = torch.randn(n, task.width, generator=gen) * 3
    if task.kind == "multiclass":
        target = torch.randint(0, task.width, (n,), generator=gen)
    elif task.kind == "regression":
        target = torch.randn(n, task.width, generator=gen)
    else:
        target = torch.randint(0, 2, (n, task.width), generator=gen).float()
    observed = torch.rand(target.shape, generator=gen) < rate
    return input, target, observed


@pytest.mark.parametrize("task", TASKS, ids=[task.name for task in TASKS])
@FAST
@given(n=sizes, seed=seeds, rate=rates)
def test_task_loss_is_sum_and_observed_count(task: Task, n: int, seed: int, rate: float) -> None:
    input, target, observed = task_data(task, n, seed, rate)
    options: dict[str, Any] = {}
    if task.pos_weight is not None:
        pos_weight = balanced_pos_weight(target, observed)
        options = {"pos_weight": pos_weight}
    term = task_loss(task, input, target, observed, **options)
    assert isinstance(term, LossTerm)
    n_observed = int(observed.sum())
    assert term.count.item() == n_observed
    if task.kind == "multiclass":
        assert observed.shape == (n,)  # one count per observed row
    if n_observed:
        subset_options = {}
        if task.pos_weight is not None:
            subset_options = {"pos_weight": pos_weight.expand(n, task.width)[observed]}
        plain = PLAIN[task.name]
        expected_sum = plain(input[observed], target[observed], reduction="sum", **subset_options)
        expected_mean = plain(input[observed], target[observed], reduction="mean", **subset_options)
    else:
        expected_sum = expected_mean = torch.zeros(())
    torch.testing.assert_close(term.sum, expected_sum, **TOLERANCE)
    torch.testing.assert_close(term.mean(), expected_mean, **TOLERANCE)


@pytest.mark.parametrize("task", TASKS, ids=[task.name for task in TASKS])
def test_task_loss_with_nothing_observed_has_mean_exactly_zero(task: Task) -> None:
    input, target, observed = task_data(task, 5, seed=0, rate=0.0)
    input.requires_grad_(True)
    term = task_loss(task, input, target, observed)
    assert term.count.item() == 0
    mean = term.mean()
    assert mean.item() == 0.0
    assert mean.requires_grad
    mean.backward()
    assert input.grad is not None
    assert torch.equal(input.grad, torch.zeros_like(input.grad))


def test_loss_term_mean_divides_by_count() -> None:
    term = LossTerm(torch.tensor(6.0), torch.tensor(4.0))
    assert term.mean().item() == 1.5
    assert LossTerm(torch.tensor(0.0), torch.tensor(0.0)).mean().item() == 0.0


@settings(max_examples=40, deadline=None)
@given(n=sizes, k=widths, seed=seeds, rate=rates)
def test_balanced_pos_weight_is_negatives_over_positives_on_observed(
    n: int, k: int, seed: int, rate: float
) -> None:
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 2, (n, k), generator=gen).float()
    observed = torch.rand(n, k, generator=gen) < rate
    weight = balanced_pos_weight(target, observed)
    assert weight.shape == (k,)
    for j in range(k):
        labels = [target[i, j].item() for i in range(n) if observed[i, j]]
        positives, negatives = labels.count(1.0), labels.count(0.0)
        expected = negatives / positives if positives and negatives else 1.0
        assert weight[j].item() == pytest.approx(expected, rel=1e-6)


def test_balanced_pos_weight_pinned_values() -> None:
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    observed = torch.tensor(
        [[True, True, True], [True, True, True], [True, False, True], [False, False, True]]
    )
    # label 0: 1 positive, 2 negatives; label 1: no positive observed; label 2: 3 pos, 1 neg.
    expected = torch.tensor([2.0, 1.0, 1.0 / 3.0])
    torch.testing.assert_close(balanced_pos_weight(target, observed), expected)
